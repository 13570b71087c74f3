//! Writing label sets for prometheus-client: shared by the metric families' labels and
//! the exemplars' trace and span ids.

use std::fmt::{self, Write as _};

use prometheus_client::encoding::LabelSetEncoder;

/// Writes one `key="value"` label; the encoder escapes the value.
pub(crate) fn write_label(
    encoder: &mut LabelSetEncoder,
    key: &str,
    value: impl fmt::Display,
) -> fmt::Result {
    let mut label = encoder.encode_label();
    let mut key_encoder = label.encode_label_key()?;
    key_encoder.write_str(key)?;
    let mut value_encoder = key_encoder.encode_label_value()?;
    write!(value_encoder, "{value}")?;
    value_encoder.finish()
}
