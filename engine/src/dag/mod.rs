//! `dag` is pure graph logic over step indices (petgraph): cycles, upstream and
//! downstream sets, topological order. No I/O, no plan parsing.

use petgraph::algo::{tarjan_scc, toposort};
use petgraph::graphmap::DiGraphMap;

/// The dependency graph of a plan's steps; an edge runs from a need to its dependent.
#[derive(Debug, Clone)]
pub struct Dag {
    needs: Vec<Vec<usize>>,
    dependents: Vec<Vec<usize>>,
    topo: Vec<usize>,
}

impl Dag {
    /// Builds the graph from each step's `needs` (indices). Every index must be in
    /// range. Returns every cycle (as the steps on it, in dependency order) if any.
    pub fn new(needs: Vec<Vec<usize>>) -> Result<Dag, Vec<Vec<usize>>> {
        let n = needs.len();
        let mut graph = DiGraphMap::<usize, ()>::with_capacity(n, needs.iter().map(Vec::len).sum());
        for i in 0..n {
            graph.add_node(i);
        }
        let mut dependents = vec![Vec::new(); n];
        for (i, ns) in needs.iter().enumerate() {
            for &need in ns {
                assert!(need < n, "need index {need} out of range");
                graph.add_edge(need, i, ());
                dependents[need].push(i);
            }
        }
        match toposort(&graph, None) {
            Ok(topo) => Ok(Dag {
                needs,
                dependents,
                topo,
            }),
            Err(_) => Err(cycles(&graph)),
        }
    }

    pub fn len(&self) -> usize {
        self.needs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.needs.is_empty()
    }

    pub fn needs(&self, step: usize) -> &[usize] {
        &self.needs[step]
    }

    pub fn dependents(&self, step: usize) -> &[usize] {
        &self.dependents[step]
    }

    /// Steps in an order where every step comes after all it needs.
    pub fn topological(&self) -> &[usize] {
        &self.topo
    }

    /// Every step `step` transitively needs (not itself).
    pub fn upstream(&self, step: usize) -> Vec<bool> {
        self.reach(step, &self.needs)
    }

    /// Every step that transitively needs `step` (not itself).
    pub fn downstream(&self, step: usize) -> Vec<bool> {
        self.reach(step, &self.dependents)
    }

    fn reach(&self, from: usize, edges: &[Vec<usize>]) -> Vec<bool> {
        let mut seen = vec![false; self.len()];
        let mut stack: Vec<usize> = edges[from].clone();
        while let Some(s) = stack.pop() {
            if !seen[s] {
                seen[s] = true;
                stack.extend(edges[s].iter().copied());
            }
        }
        seen
    }
}

/// Each strongly connected component with more than one step, or a step that needs
/// itself, rotated so it starts at its smallest index and listed in dependency order
/// (each step needs the one before it, the first needs the last).
fn cycles(graph: &DiGraphMap<usize, ()>) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    for scc in tarjan_scc(graph) {
        if scc.len() == 1 && !graph.contains_edge(scc[0], scc[0]) {
            continue;
        }
        out.push(order_cycle(graph, &scc));
    }
    out.sort();
    out
}

/// The shortest cycle through the component's smallest step (breadth-first), so
/// the reported cycle is short and deterministic.
fn order_cycle(graph: &DiGraphMap<usize, ()>, scc: &[usize]) -> Vec<usize> {
    let start = *scc.iter().min().expect("non-empty component");
    let mut parent: std::collections::BTreeMap<usize, usize> = Default::default();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(cur) = queue.pop_front() {
        let mut next: Vec<usize> = graph.neighbors(cur).filter(|s| scc.contains(s)).collect();
        next.sort();
        for s in next {
            if s == start {
                let mut path = vec![cur];
                while let Some(&p) = parent.get(path.last().expect("non-empty")) {
                    path.push(p);
                }
                path.reverse();
                return path;
            }
            if s != start && !parent.contains_key(&s) {
                parent.insert(s, cur);
                queue.push_back(s);
            }
        }
    }
    unreachable!("a strongly connected component with an edge has a cycle through each step")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topological_order_puts_needs_first() {
        let dag = Dag::new(vec![vec![], vec![0], vec![0], vec![1, 2]]).unwrap();
        let pos: Vec<usize> = (0..4)
            .map(|s| dag.topological().iter().position(|&t| t == s).unwrap())
            .collect();
        assert!(pos[0] < pos[1] && pos[0] < pos[2] && pos[1] < pos[3] && pos[2] < pos[3]);
        assert_eq!(dag.dependents(0), &[1, 2]);
        assert_eq!(dag.upstream(3), vec![true, true, true, false]);
        assert_eq!(dag.downstream(1), vec![false, false, false, true]);
    }

    #[test]
    fn reports_each_cycle_in_dependency_order() {
        // 0 -> 1 -> 2 -> 0 is a cycle (2 needs 1, 1 needs 0, 0 needs 2); 3 needs itself.
        let err = Dag::new(vec![vec![2], vec![0], vec![1], vec![3], vec![]]).unwrap_err();
        assert_eq!(err, vec![vec![0, 1, 2], vec![3]]);
    }
}
