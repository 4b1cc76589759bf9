//! Store tests on real SQLite in a temp dir.
