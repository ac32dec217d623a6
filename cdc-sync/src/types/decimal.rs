//! Kafka Connect's `Decimal`: the unscaled value as a big-endian two's
//! complement integer (what Java's `BigInteger.toByteArray` writes).

use num_bigint::BigInt;

/// `-12.345` → (unscaled bytes, scale 3). `None` for NaN and infinities.
pub fn to_unscaled(text: &str) -> Option<(Vec<u8>, u32)> {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    let digits = format!("{int}{frac}");
    let n = BigInt::parse_bytes(digits.as_bytes(), 10)?;
    Some((n.to_signed_bytes_be(), u32::try_from(frac.len()).ok()?))
}

/// (unscaled bytes, scale) → `-12.345`.
pub fn from_unscaled(bytes: &[u8], scale: u32) -> String {
    let n = BigInt::from_signed_bytes_be(bytes);
    let (neg, digits) = {
        let s = n.to_string();
        match s.strip_prefix('-') {
            Some(d) => (true, d.to_string()),
            None => (false, s),
        }
    };
    let scale = scale as usize;
    let body = if scale == 0 {
        digits
    } else {
        let padded = format!("{digits:0>width$}", width = scale + 1);
        let (i, f) = padded.split_at(padded.len() - scale);
        format!("{i}.{f}")
    };
    if neg {
        format!("-{body}")
    } else {
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_like_java_big_decimal() {
        for t in [
            "12.34",
            "-12.34",
            "0",
            "0.00",
            "-0.001",
            "99999999999999999999999999.5",
        ] {
            let (b, s) = to_unscaled(t).expect(t);
            assert_eq!(from_unscaled(&b, s), t);
        }
        // Java: new BigDecimal("12.34").unscaledValue().toByteArray() = [0x04, 0xd2].
        assert_eq!(to_unscaled("12.34"), Some((vec![0x04, 0xd2], 2)));
        assert_eq!(to_unscaled("-1"), Some((vec![0xff], 0)));
        assert_eq!(to_unscaled("NaN"), None);
    }
}
