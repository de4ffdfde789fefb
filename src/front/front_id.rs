//! Front id conversion: the UI shows decimal ids, the API uses `<prefix>_<base36>`
//! (e.g. `6380615` ↔ `inb_3srbb`). Backs `hookrelay front id`.

/// What a value converted to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Converted {
    /// A decimal id became an API id.
    ApiId(String),
    /// An API id became its decimal id.
    Decimal(u64),
}

/// Converts either way: decimal → `<prefix>_<base36>`, `xxx_<base36>` → decimal.
///
/// # Errors
/// A message when `value` is neither a decimal number nor `prefix_base36`.
pub fn convert(value: &str, prefix: &str) -> Result<Converted, String> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        let n: u64 = value
            .parse()
            .map_err(|_| format!("`{value}` is too large for an id"))?;
        return Ok(Converted::ApiId(format!("{prefix}_{}", to_base36(n))));
    }
    let (_, digits) = value
        .split_once('_')
        .ok_or_else(|| format!("`{value}` is neither a decimal id nor an id like inb_3srbb"))?;
    from_base36(digits)
        .map(Converted::Decimal)
        .ok_or_else(|| format!("`{digits}` in `{value}` is not a base-36 number"))
}

/// `n` in lowercase base 36.
#[must_use]
pub fn to_base36(mut n: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    if n == 0 {
        return "0".into();
    }
    let mut out = Vec::new();
    while n > 0 {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// Parses base 36 (either case); `None` if empty, invalid or too large.
#[must_use]
pub fn from_base36(s: &str) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    u64::from_str_radix(s, 36).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_ways() {
        assert_eq!(
            convert("6380615", "inb"),
            Ok(Converted::ApiId("inb_3srbb".into()))
        );
        assert_eq!(
            convert("18366612", "inb"),
            Ok(Converted::ApiId("inb_axnro".into()))
        );
        assert_eq!(
            convert("inb_3srbb", "inb"),
            Ok(Converted::Decimal(6_380_615))
        );
        assert_eq!(
            convert("inb_axnro", "inb"),
            Ok(Converted::Decimal(18_366_612))
        );
        assert_eq!(
            convert("cnv_AXNRO", "inb"),
            Ok(Converted::Decimal(18_366_612))
        );
        assert_eq!(convert("42", "tea"), Ok(Converted::ApiId("tea_16".into())));
        assert_eq!(convert("0", "inb"), Ok(Converted::ApiId("inb_0".into())));
    }

    #[test]
    fn round_trip_and_errors() {
        for n in [1u64, 35, 36, 1_295, 6_380_615, u64::MAX] {
            assert_eq!(from_base36(&to_base36(n)), Some(n));
        }
        assert!(convert("inb_", "inb").is_err());
        assert!(convert("inb_3s-bb", "inb").is_err());
        assert!(convert("hello", "inb").is_err());
        assert!(convert("99999999999999999999999", "inb").is_err());
    }
}
