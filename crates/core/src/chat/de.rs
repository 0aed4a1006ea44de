//! Single-pass deserialisation for structs that keep unknown fields.
//!
//! `#[serde(flatten)]` buffers every field of the struct into an intermediate tree
//! before reading the known ones back out of it; on the request path that doubles the
//! work of a parse. [`deserialize_with_extra!`] writes the visitor by hand instead:
//! one pass over the object, known keys parsed straight into their typed fields,
//! unknown ones into `extra`. Serialisation keeps using serde's derive (flattening on
//! the way out does not buffer).

use std::borrow::Cow;

/// An object key, borrowed from the input when it has no escapes.
pub(crate) struct Key<'de>(pub(crate) Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// Implements `Deserialize` for a struct with an `extra: Extra` field.
///
/// Each field is `name: "wire" => mode` where mode is `req` (must be present), `opt`
/// (an `Option`, absent or `null` is `None`), `default` (`Default::default()` when
/// absent), `(with expr)` (that expression when absent) or `(via T)` / `(via T, expr)`
/// (read as the newtype `T` and its `.0` taken; `None`, or `expr`, when absent). Fields named in a trailing
/// `skip { … }` are not on the wire and start as their `Default`.
macro_rules! deserialize_with_extra {
    ($name:ident { $($field:ident : $wire:literal => $mode:tt),* $(,)? } $(skip { $($skip:ident),* })?) => {
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> serde::de::Visitor<'de> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str(concat!("a ", stringify!($name), " object"))
                    }
                    #[allow(unused_mut)]
                    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<$name, A::Error> {
                        $( let mut $field = None; )*
                        let mut extra = $crate::chat::Extra::new();
                        while let Some(key) = map.next_key::<$crate::chat::de::Key<'de>>()? {
                            match key.0.as_ref() {
                                $( $wire => { $field = $crate::chat::de::deserialize_with_extra!(@read $mode, map); } )*
                                _ => {
                                    let value: serde_json::Value = map.next_value()?;
                                    extra.insert(key.0.into_owned(), value);
                                }
                            }
                        }
                        Ok($name {
                            $( $field: $crate::chat::de::deserialize_with_extra!(@finish $mode, $field, $wire, A), )*
                            $($( $skip: Default::default(), )*)?
                            extra,
                        })
                    }
                }
                d.deserialize_map(V)
            }
        }
    };
    (@read opt, $map:ident) => { $map.next_value()? };
    (@read (via $t:ident $(, $e:expr)?), $map:ident) => { Some($map.next_value::<$t>()?.0) };
    (@read $other:tt, $map:ident) => { Some($map.next_value()?) };
    (@finish req, $f:ident, $wire:literal, $A:ident) => {
        $f.ok_or_else(|| <$A::Error as serde::de::Error>::missing_field($wire))?
    };
    (@finish opt, $f:ident, $wire:literal, $A:ident) => { $f };
    (@finish default, $f:ident, $wire:literal, $A:ident) => { $f.unwrap_or_default() };
    (@finish (with $e:expr), $f:ident, $wire:literal, $A:ident) => { $f.unwrap_or_else(|| $e) };
    // Read through the newtype `$t` (its `.0`); `None` when absent, or `$e`.
    (@finish (via $t:ident), $f:ident, $wire:literal, $A:ident) => { $f };
    (@finish (via $t:ident, $e:expr), $f:ident, $wire:literal, $A:ident) => { $f.unwrap_or_else(|| $e) };
}
pub(crate) use deserialize_with_extra;

/// Implements `Deserialize` for an enum that is either a string or another JSON shape,
/// without serde's `untagged` buffering: `$name { str => |s: String| …, seq|map => … }`.
macro_rules! string_or {
    ($name:ident, $expecting:literal, str => $from_str:expr, $kind:ident => $from_other:expr) => {
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> serde::de::Visitor<'de> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<$name, E> {
                        #[allow(clippy::redundant_closure_call)]
                        Ok(($from_str)(v.to_owned()))
                    }
                    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<$name, E> {
                        #[allow(clippy::redundant_closure_call)]
                        Ok(($from_str)(v))
                    }
                    $crate::chat::de::string_or!(@other $kind, $name, $from_other);
                }
                d.deserialize_any(V)
            }
        }
    };
    (@other seq, $name:ident, $from_other:expr) => {
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<$name, A::Error> {
            let v = serde::Deserialize::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))?;
            #[allow(clippy::redundant_closure_call)]
            Ok(($from_other)(v))
        }
    };
    (@other map, $name:ident, $from_other:expr) => {
        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<$name, A::Error> {
            let v = serde::Deserialize::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
            #[allow(clippy::redundant_closure_call)]
            Ok(($from_other)(v))
        }
    };
}
pub(crate) use string_or;
