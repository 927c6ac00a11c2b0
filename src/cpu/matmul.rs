//! Float64 references of the Linear layer's products ([`crate::matmul`]): `rows` = batch × M
//! rows of X (in_features = K) and of Y / dY (out_features = N); W is N × K row-major.

/// `Y = X · Wᵀ (+ bias)`: rows × N.
pub fn linear_forward(x: &[f64], w: &[f64], bias: Option<&[f64]>, k: usize, n: usize) -> Vec<f64> {
    let rows = x.len().checked_div(k).unwrap_or(0);
    let mut y = vec![0.0; rows * n];
    for r in 0..rows {
        let xr = &x[r * k..(r + 1) * k];
        for j in 0..n {
            let wj = &w[j * k..(j + 1) * k];
            let s: f64 = xr.iter().zip(wj).map(|(a, b)| a * b).sum();
            y[r * n + j] = s + bias.map_or(0.0, |b| b[j]);
        }
    }
    y
}

/// `dX = dY · W`: rows × K.
pub fn backward_input(dy: &[f64], w: &[f64], k: usize, n: usize) -> Vec<f64> {
    let rows = dy.len().checked_div(n).unwrap_or(0);
    let mut dx = vec![0.0; rows * k];
    for r in 0..rows {
        for j in 0..n {
            let g = dy[r * n + j];
            for p in 0..k {
                dx[r * k + p] += g * w[j * k + p];
            }
        }
    }
    dx
}

/// `dW = dYᵀ · X`, summed over every row (batch included): N × K.
pub fn backward_weight(dy: &[f64], x: &[f64], k: usize, n: usize) -> Vec<f64> {
    let rows = dy.len().checked_div(n).unwrap_or(0);
    let mut dw = vec![0.0; n * k];
    for r in 0..rows {
        for j in 0..n {
            let g = dy[r * n + j];
            for p in 0..k {
                dw[j * k + p] += g * x[r * k + p];
            }
        }
    }
    dw
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_products() {
        // X 2×3, W 2×3 (N = 2).
        let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let w = [1.0, 0.0, -1.0, 0.5, 0.5, 0.5];
        assert_eq!(
            linear_forward(&x, &w, Some(&[10.0, 0.0]), 3, 2),
            [8.0, 3.0, 8.0, 7.5]
        );
        let dy = [1.0, 2.0, 0.0, 1.0];
        assert_eq!(
            backward_input(&dy, &w, 3, 2),
            [2.0, 1.0, 0.0, 0.5, 0.5, 0.5]
        );
        assert_eq!(
            backward_weight(&dy, &x, 3, 2),
            [1.0, 2.0, 3.0, 6.0, 9.0, 12.0]
        );
    }
}
