//! How a layer's weight is viewed as a (rows, cols) matrix and cut into blocks.

use crate::error::{Error, Result};

/// The layout of a weight tensor, following fairseq's Quant-Noise / PQ conventions.
///
/// Every layout is viewed as a row-major matrix (rows = output units, cols); a block is
/// `block_size` consecutive elements of one row, so block `b` covers flat elements
/// `b·block_size .. (b+1)·block_size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WeightShape {
    /// A plain (rows, cols) matrix.
    Matrix {
        /// Rows.
        rows: u64,
        /// Columns.
        cols: u64,
    },
    /// `nn.Linear` weight (out_features, in_features): blocks along the input dimension.
    Linear {
        /// Output features (rows).
        out_features: u64,
        /// Input features (cols).
        in_features: u64,
    },
    /// `nn.Embedding` weight (num_embeddings, dim): blocks along the embedding dimension.
    Embedding {
        /// Number of embeddings (rows).
        num_embeddings: u64,
        /// Embedding dimension (cols).
        dim: u64,
    },
    /// `nn.Conv2d` weight (out, in, kh, kw): blocks along the flattened in·kh·kw filter.
    /// fairseq's "whole k×k kernel" blocks are `block_size = kh·kw`; 1×1 convs block along
    /// the input channels.
    Conv2d {
        /// Output channels (rows).
        out_channels: u64,
        /// Input channels.
        in_channels: u64,
        /// Kernel height.
        kh: u64,
        /// Kernel width.
        kw: u64,
    },
}

impl WeightShape {
    /// A (rows, cols) matrix.
    pub fn matrix(rows: u64, cols: u64) -> Self {
        WeightShape::Matrix { rows, cols }
    }

    /// Rows of the matrix view (output units).
    pub fn rows(&self) -> u64 {
        match *self {
            WeightShape::Matrix { rows, .. } => rows,
            WeightShape::Linear { out_features, .. } => out_features,
            WeightShape::Embedding { num_embeddings, .. } => num_embeddings,
            WeightShape::Conv2d { out_channels, .. } => out_channels,
        }
    }

    /// Columns of the matrix view.
    pub fn cols(&self) -> u64 {
        match *self {
            WeightShape::Matrix { cols, .. } => cols,
            WeightShape::Linear { in_features, .. } => in_features,
            WeightShape::Embedding { dim, .. } => dim,
            WeightShape::Conv2d {
                in_channels,
                kh,
                kw,
                ..
            } => in_channels * kh * kw,
        }
    }

    /// Number of elements.
    pub fn numel(&self) -> u64 {
        self.rows() * self.cols()
    }

    /// Checks that the shape can be cut into blocks of `block_size` and returns the number of
    /// blocks.
    pub fn blocks(&self, block_size: u32) -> Result<u64> {
        if block_size == 0 {
            return Err(crate::error::invalid("block_size", 0, "must be at least 1"));
        }
        if self.rows() == 0 || self.cols() == 0 {
            return Err(crate::error::invalid(
                "shape",
                format!("{self:?}"),
                "must not be empty",
            ));
        }
        if !self.cols().is_multiple_of(block_size as u64) {
            return Err(Error::BlockSizeMismatch {
                cols: self.cols(),
                block_size: block_size as u64,
            });
        }
        Ok(self.numel() / block_size as u64)
    }
}
