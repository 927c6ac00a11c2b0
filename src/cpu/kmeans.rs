//! Reference engine of the k-means driver: the same steps in f64 on the host.

use crate::error::Result;
use crate::kmeans::{Engine, KmeansProblem, KmeansResult, Run, SUM_TILE, StepOut};
use crate::noise::{host_values, store_host};
use crate::runtime::context::Context;
use crate::tensor::DType;

struct Problem {
    data: Vec<f64>,
    d: usize,
    k: usize,
    codebook: Vec<f64>,
    pending: Vec<f64>,
    assignments: Vec<u32>,
    mins: Vec<f64>,
    distances: Vec<f64>,
}

/// Host state of every problem.
pub(crate) struct CpuEngine {
    problems: Vec<Problem>,
}

/// Per-cluster means of `data` under `assignments` (a cluster without members keeps `old`),
/// accumulated in f64 in index order, and the counts.
pub fn means(data: &[f64], d: usize, assignments: &[u32], old: &[f64]) -> (Vec<f64>, Vec<u32>) {
    let k = old.len() / d;
    let mut sums = vec![0.0; k * d];
    let mut counts = vec![0u32; k];
    for (x, &a) in data.chunks(d).zip(assignments) {
        counts[a as usize] += 1;
        for (s, v) in sums[a as usize * d..(a as usize + 1) * d].iter_mut().zip(x) {
            *s += v;
        }
    }
    for c in 0..k {
        for j in 0..d {
            sums[c * d + j] = if counts[c] > 0 {
                sums[c * d + j] / counts[c] as f64
            } else {
                old[c * d + j]
            };
        }
    }
    (sums, counts)
}

impl CpuEngine {
    pub(crate) fn new(problems: &[KmeansProblem<'_>], k: u32) -> Result<Self> {
        let mut out = Vec::with_capacity(problems.len());
        for p in problems {
            let data = host_values(p.data, "data")?;
            let d = p.dim as usize;
            out.push(Problem {
                mins: vec![0.0; data.len() / d],
                data,
                d,
                k: k as usize,
                codebook: vec![0.0; k as usize * d],
                pending: vec![0.0; k as usize * d],
                assignments: Vec::new(),
                distances: Vec::new(),
            });
        }
        Ok(Self { problems: out })
    }

    pub(crate) fn into_results(self, ctx: &Context, runs: Vec<Run>) -> Result<Vec<KmeansResult>> {
        self.problems
            .into_iter()
            .zip(runs)
            .map(|(p, run)| {
                let codebook = ctx.empty(p.codebook.len() as u64, DType::F32)?;
                store_host(&codebook, &p.codebook, "codebook")?;
                let assignments = ctx.empty(p.assignments.len() as u64, DType::U32)?;
                let a: Vec<f64> = p.assignments.iter().map(|&x| x as f64).collect();
                store_host(&assignments, &a, "assignments")?;
                Ok(KmeansResult {
                    codebook,
                    assignments,
                    counts: run.counts,
                    objective: run.objective,
                    iterations: run.iterations,
                    repairs: run.repairs,
                    scored: run.scored,
                })
            })
            .collect()
    }
}

fn tile_sums(values: &[f64]) -> Vec<f64> {
    values
        .chunks(SUM_TILE as usize)
        .map(|c| c.iter().sum())
        .collect()
}

impl Engine for CpuEngine {
    fn dim(&self, p: usize) -> u32 {
        self.problems[p].d as u32
    }

    fn init_rows(&mut self, p: usize, first: u32, rows: &[u64]) -> Result<()> {
        let pr = &mut self.problems[p];
        let d = pr.d;
        for (i, &r) in rows.iter().enumerate() {
            let c = first as usize + i;
            let row = pr.data[r as usize * d..(r as usize + 1) * d].to_vec();
            pr.codebook[c * d..(c + 1) * d].copy_from_slice(&row);
        }
        Ok(())
    }

    fn pp_round(&mut self, p: usize, c: u32, first: bool) -> Result<Vec<f64>> {
        let pr = &mut self.problems[p];
        let d = pr.d;
        let centroid = &pr.codebook[c as usize * d..(c as usize + 1) * d];
        for (m, x) in pr.mins.iter_mut().zip(pr.data.chunks(d)) {
            let dist: f64 = x.iter().zip(centroid).map(|(a, b)| (a - b) * (a - b)).sum();
            *m = if first { dist } else { m.min(dist) };
        }
        Ok(tile_sums(&pr.mins))
    }

    fn pp_tile(&mut self, p: usize, tile: u64) -> Result<Vec<f64>> {
        let mins = &self.problems[p].mins;
        let start = (tile * SUM_TILE) as usize;
        Ok(mins[start..(start + SUM_TILE as usize).min(mins.len())].to_vec())
    }

    fn step(&mut self, active: &[usize]) -> Result<Vec<StepOut>> {
        Ok(active
            .iter()
            .map(|&p| {
                let pr = &mut self.problems[p];
                let (assignments, dist) = crate::cpu::assign::assign(&pr.data, &pr.codebook, pr.d);
                let (pending, counts) = means(&pr.data, pr.d, &assignments, &pr.codebook);
                pr.assignments = assignments;
                pr.pending = pending;
                let objective = tile_sums(&dist).iter().sum();
                pr.distances = dist;
                debug_assert_eq!(counts.len(), pr.k);
                StepOut {
                    counts,
                    objective,
                    scored: 1.0,
                }
            })
            .collect())
    }

    fn distances(&mut self, p: usize) -> Result<Vec<f64>> {
        Ok(self.problems[p].distances.clone())
    }

    fn accept(&mut self, p: usize) {
        let pr = &mut self.problems[p];
        std::mem::swap(&mut pr.codebook, &mut pr.pending);
    }

    fn split(&mut self, p: usize, empty: u32, from: u32, eps: &[f32]) -> Result<()> {
        let pr = &mut self.problems[p];
        let d = pr.d;
        for (j, &e) in eps.iter().enumerate() {
            let m = pr.codebook[from as usize * d + j];
            pr.codebook[empty as usize * d + j] = m + e as f64;
            pr.codebook[from as usize * d + j] = m - e as f64;
        }
        Ok(())
    }
}
