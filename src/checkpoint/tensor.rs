//! Fast tch tensor -> checkpoint array conversion: one copy straight into the byte buffer
//! (optionally reusing the buffer of a previous save) instead of element-wise encoding.
//!
//! At the Kaggle-notebook size (~152 MB of offsets) this is the synchronous part of every
//! save, so it must stay a plain memory copy.

use tch::{Device, Kind, TchError, Tensor};

use super::{DType, NamedArray};

/// `t` as an F32 array named `name` (moved to CPU and converted to f32 if needed).
pub fn f32_array(name: &str, t: &Tensor) -> Result<NamedArray, TchError> {
    let mut a = NamedArray {
        name: name.to_string(),
        dtype: DType::F32,
        shape: Vec::new(),
        data: Vec::new(),
    };
    refill_f32_array(&mut a, t)?;
    Ok(a)
}

/// Overwrites `a` with `t` (shape, F32 data), reusing `a.data`'s allocation when it fits.
pub fn refill_f32_array(a: &mut NamedArray, t: &Tensor) -> Result<(), TchError> {
    let t = t
        .f_detach()?
        .f_to_device(Device::Cpu)?
        .f_to_kind(Kind::Float)?
        .f_contiguous()?;
    let numel = t.numel();
    a.dtype = DType::F32;
    a.shape.clear();
    a.shape.extend(t.size().iter().map(|&s| s as usize));
    a.data.resize(numel * 4, 0);
    t.f_copy_data_u8(&mut a.data, numel)?;
    if cfg!(target_endian = "big") {
        a.data.chunks_exact_mut(4).for_each(|c| c.reverse());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_element_wise_encoding_and_reuses_buffers() {
        let t = Tensor::from_slice(&[1.5f32, -2.0, f32::MIN_POSITIVE, 3.25, 0.0, 7.0]).view([2, 3]);
        let a = f32_array("x", &t).unwrap();
        assert_eq!(a.shape, vec![2, 3]);
        let want: Vec<u8> = Vec::<f32>::try_from(t.flatten(0, -1))
            .unwrap()
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert_eq!(a.data, want);
        // A transposed (non-contiguous) f64 tensor is made contiguous and converted.
        let d = Tensor::from_slice(&[1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0])
            .view([2, 3])
            .tr();
        let mut b = a.clone();
        let ptr = b.data.as_ptr();
        refill_f32_array(&mut b, &d).unwrap();
        assert_eq!(b.shape, vec![3, 2]);
        let vals: Vec<f32> = b
            .data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(vals, vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
        assert_eq!(
            b.data.as_ptr(),
            ptr,
            "same-size refill reuses the allocation"
        );
    }
}
