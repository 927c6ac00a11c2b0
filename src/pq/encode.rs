//! PQ encoding of layer weights (k-means over their blocks, batched over layers) and the
//! centroid gradient of iPQ finetuning.

use super::PqLayer;
use crate::error::{Result, invalid};
use crate::kmeans::{KmeansOptions, KmeansProblem};
use crate::noise::{check_len, host_values, store_host};
use crate::runtime::batch::Batch;
use crate::runtime::context::{Backend, Context, check_dtype};
use crate::shape::WeightShape;
use crate::tensor::{DType, Tensor};

/// A layer weight to encode: f32, `shape.numel()` elements, cut into blocks of `block_size`.
#[derive(Clone, Copy, Debug)]
pub struct PqEncodeLayer<'a> {
    /// The weight.
    pub weight: &'a Tensor,
    /// Its layout.
    pub shape: WeightShape,
    /// Subvector (block) size, 1..=64.
    pub block_size: u32,
}

/// How [`Context::pq_centroid_grad`] combines the gradients of the blocks of one centroid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum CentroidGrad {
    /// The mean (default): the gradient of a centroid does not grow with its population.
    #[default]
    Mean,
    /// The sum: the exact gradient of the loss with respect to the shared centroid.
    Sum,
}

impl Context {
    /// PQ-encodes layers: k-means over each layer's blocks (one problem per layer, all layers
    /// batched), giving each a codebook of `options.n_centroids` centroids and one index per
    /// block.
    pub fn pq_encode(
        &self,
        layers: &[PqEncodeLayer<'_>],
        options: &KmeansOptions,
    ) -> Result<Vec<PqLayer>> {
        for l in layers {
            l.shape.blocks(l.block_size)?;
            check_len("weight", l.shape.numel(), l.weight.len)?;
            check_dtype("weight", DType::F32, l.weight.dtype)?;
        }
        let problems: Vec<_> = layers
            .iter()
            .map(|l| KmeansProblem {
                data: l.weight,
                dim: l.block_size,
            })
            .collect();
        self.kmeans(&problems, options)?
            .into_iter()
            .zip(layers)
            .map(|(r, l)| PqLayer::new(l.shape, l.block_size, r.codebook, r.assignments))
            .collect()
    }

    /// Gradient of the loss with respect to a PQ layer's centroids, from the gradient with
    /// respect to its decoded weight: `dL/dC[c]` = the mean (or sum) of `dL/dŴ` over the blocks
    /// assigned to `c`, as one deterministic segmented reduction on the device (no float
    /// atomics). A centroid without blocks gets a zero gradient, never NaN. (fairseq averages
    /// only for convolutions and sums for Linear/Embedding; here it is one explicit choice.)
    pub fn pq_centroid_grad(
        &self,
        layer: &PqLayer,
        grad_weight: &Tensor,
        reduction: CentroidGrad,
    ) -> Result<Tensor> {
        let blocks = layer.validate()?;
        self.check_owned(grad_weight, "grad_weight")?;
        check_dtype("grad_weight", DType::F32, grad_weight.dtype)?;
        check_len("grad_weight", layer.shape.numel(), grad_weight.len)?;
        let (d, k) = (layer.block_size as u64, layer.n_centroids as u64);
        if d > crate::assign::MAX_DIM as u64 {
            return Err(invalid("block_size", d, "must be at most 64"));
        }
        let out = self.empty(k * d, DType::F32)?;
        match &self.backend {
            Backend::Cpu => {
                let g = host_values(grad_weight, "grad_weight")?;
                let a: Vec<u32> = host_values(&layer.assignments, "assignments")?
                    .iter()
                    .map(|&x| x as u32)
                    .collect();
                let grad = crate::cpu::pq::centroid_grad(&g, &a, d as usize, k as usize, reduction);
                store_host(&out, &grad, "centroid grad")?;
            }
            Backend::Gpu(g) => {
                use crate::kmeans::gpu::{Partials, Reduce};
                let partials = Partials::new(self, g, blocks, d, k)?;
                let counts = self.empty(k, DType::U32)?;
                let mode = match reduction {
                    CentroidGrad::Mean => Reduce::MeanZero,
                    CentroidGrad::Sum => Reduce::Sum,
                };
                let mut batch = Batch::new(g, "pq_centroid_grad")?;
                partials.record(
                    g,
                    &mut batch,
                    grad_weight,
                    &layer.assignments,
                    (blocks, d, k),
                    None,
                    &out,
                    &counts,
                    mode,
                    None,
                )?;
                batch.finish()?;
            }
        }
        Ok(out)
    }
}
