"""medic's schemathesis hooks (SCHEMATHESIS_HOOKS points here).

POST /v1/plugins takes a WebAssembly component as `application/wasm`: send the
generated bodies as raw bytes, the way schemathesis sends `application/octet-stream`.
"""
import schemathesis

schemathesis.serializer.alias("application/wasm", "application/octet-stream")
