//! Small serde helpers that reproduce Go `encoding/json` behaviour serde lacks by default.

use serde::{Deserialize, Deserializer};

/// Go decodes `null` into a non-pointer field as "leave the zero value"; serde would reject it.
pub(crate) fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// Go's `omitempty` for numbers: zero is left out.
pub(crate) fn is_zero<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}
