//! A msgpack serializer for the core's records that writes byte for byte what `rmp_serde`
//! writes (`write_named`: structs as maps keyed by field name; `write`: structs as arrays),
//! straight into a `Vec<u8>` without rmp's generic writer and per-marker error plumbing.
//! Encoding journal entries with `rmp_serde` was two thirds of the sealer thread's
//! instructions (callgrind, session 13). `tests` below compare the bytes with `rmp_serde` at
//! every marker boundary, and `store::encode_into` / `Command::fingerprint` assert the same
//! for every record a debug build writes (so `cargo test` checks every record kind); reading
//! stays with `rmp_serde`.
use serde::ser::{self, Serialize};

/// rmp_serde's marker for its msgpack-ext newtype: not a format the core writes.
const EXT_STRUCT_NAME: &str = "_ExtStruct";

/// Append `value` as a msgpack map per struct (field names as keys), as
/// `rmp_serde::encode::write_named` does.
pub fn write_named<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) -> Result<(), Error> {
    value.serialize(&mut Packer { out, named: true })
}

/// Append `value` with structs as arrays (no field names), as `rmp_serde::encode::write` does.
pub fn write_compact<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) -> Result<(), Error> {
    value.serialize(&mut Packer { out, named: false })
}

/// Single values written as the serializer writes them, for hand-written encoders of hot
/// records (`store::encode_account_into`): all inlined, where the serializer calls out for
/// every value past a fixint. `Packer` keeps its own copies of the width rules: routing its
/// out-of-line writers through these measured 5-14% slower merge rounds (session 26).
#[inline(always)]
pub fn put_uint(o: &mut Vec<u8>, v: u64) {
    if v < 128 {
        o.push(v as u8);
    } else if v < 256 {
        o.extend_from_slice(&[0xcc, v as u8]);
    } else if v < 65_536 {
        let b = (v as u16).to_be_bytes();
        o.extend_from_slice(&[0xcd, b[0], b[1]]);
    } else if v < 1 << 32 {
        let b = (v as u32).to_be_bytes();
        o.extend_from_slice(&[0xce, b[0], b[1], b[2], b[3]]);
    } else {
        let b = v.to_be_bytes();
        o.extend_from_slice(&[0xcf, b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
    }
}

#[inline(always)]
pub fn put_sint(o: &mut Vec<u8>, v: i64) {
    if v >= 0 {
        put_uint(o, v as u64);
    } else if v >= -32 {
        o.push(v as i8 as u8);
    } else if v >= -128 {
        o.extend_from_slice(&[0xd0, v as i8 as u8]);
    } else if v >= -32_768 {
        let b = (v as i16).to_be_bytes();
        o.extend_from_slice(&[0xd1, b[0], b[1]]);
    } else if v >= -(1 << 31) {
        let b = (v as i32).to_be_bytes();
        o.extend_from_slice(&[0xd2, b[0], b[1], b[2], b[3]]);
    } else {
        let b = v.to_be_bytes();
        o.extend_from_slice(&[0xd3, b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
    }
}

/// An array header for `n` elements (at most `u32::MAX`).
#[inline(always)]
pub fn put_array_len(o: &mut Vec<u8>, n: usize) {
    if n < 16 {
        o.push(0x90 | n as u8);
    } else if n < 65_536 {
        let b = (n as u16).to_be_bytes();
        o.extend_from_slice(&[0xdc, b[0], b[1]]);
    } else {
        let b = u32::try_from(n).expect("an array length fits msgpack").to_be_bytes();
        o.extend_from_slice(&[0xdd, b[0], b[1], b[2], b[3]]);
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Error(String);

impl ser::Error for Error {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Error(msg.to_string())
    }
}

pub struct Packer<'a> {
    out: &'a mut Vec<u8>,
    named: bool,
}

impl Packer<'_> {
    // Most values are small integers and short strings (field names, ids): their paths are
    // inlined, the wider forms are not.
    #[inline(always)]
    fn uint(&mut self, v: u64) {
        if v < 128 {
            self.out.push(v as u8);
        } else {
            self.uint_wide(v);
        }
    }

    #[inline(never)]
    fn uint_wide(&mut self, v: u64) {
        let o = &mut *self.out;
        if v < 256 {
            o.extend_from_slice(&[0xcc, v as u8]);
        } else if v < 65_536 {
            o.push(0xcd);
            o.extend_from_slice(&(v as u16).to_be_bytes());
        } else if v < 1 << 32 {
            o.push(0xce);
            o.extend_from_slice(&(v as u32).to_be_bytes());
        } else {
            o.push(0xcf);
            o.extend_from_slice(&v.to_be_bytes());
        }
    }

    #[inline(always)]
    fn sint(&mut self, v: i64) {
        if (-32..128).contains(&v) {
            // a positive or negative fixint: the byte is the value
            self.out.push(v as i8 as u8);
        } else {
            self.sint_wide(v);
        }
    }

    #[inline(never)]
    fn sint_wide(&mut self, v: i64) {
        let o = &mut *self.out;
        if v >= 0 {
            self.uint_wide(v as u64);
        } else if v >= -128 {
            o.extend_from_slice(&[0xd0, v as i8 as u8]);
        } else if v >= -32_768 {
            o.push(0xd1);
            o.extend_from_slice(&(v as i16).to_be_bytes());
        } else if v >= -(1 << 31) {
            o.push(0xd2);
            o.extend_from_slice(&(v as i32).to_be_bytes());
        } else {
            o.push(0xd3);
            o.extend_from_slice(&v.to_be_bytes());
        }
    }

    /// A length header past the fix-size forms: the 8-bit (when `m8` is given), 16-bit or
    /// 32-bit marker and the length.
    #[inline(never)]
    fn len(&mut self, n: usize, m8: Option<u8>, m16: u8, m32: u8) -> Result<(), Error> {
        let o = &mut *self.out;
        match m8 {
            Some(m) if n < 256 => o.extend_from_slice(&[m, n as u8]),
            _ if n < 65_536 => {
                o.push(m16);
                o.extend_from_slice(&(n as u16).to_be_bytes());
            }
            _ => {
                let n = u32::try_from(n).map_err(|_| Error(format!("length {n} does not fit msgpack")))?;
                o.push(m32);
                o.extend_from_slice(&n.to_be_bytes());
            }
        }
        Ok(())
    }

    #[inline(always)]
    fn str(&mut self, s: &str) -> Result<(), Error> {
        let n = s.len();
        if n < 32 {
            self.out.reserve(1 + n);
            self.out.push(0xa0 | n as u8);
        } else {
            self.len(n, Some(0xd9), 0xda, 0xdb)?;
        }
        self.out.extend_from_slice(s.as_bytes());
        Ok(())
    }

    #[inline(always)]
    fn array_len(&mut self, n: usize) -> Result<(), Error> {
        if n < 16 {
            self.out.push(0x90 | n as u8);
            return Ok(());
        }
        self.len(n, None, 0xdc, 0xdd)
    }

    #[inline(always)]
    fn map_len(&mut self, n: usize) -> Result<(), Error> {
        if n < 16 {
            self.out.push(0x80 | n as u8);
            return Ok(());
        }
        self.len(n, None, 0xde, 0xdf)
    }
}

/// A sequence or map: written in place when its length is known up front, else into a buffer
/// of its own and prefixed with the counted length at the end (as rmp_serde does).
pub struct Compound<'s, 'a> {
    p: &'s mut Packer<'a>,
    /// (elements so far, their bytes) when the length was not known
    buffered: Option<(usize, Vec<u8>)>,
    map: bool,
}

impl<'s, 'a> Compound<'s, 'a> {
    /// Write the header now when `len` is known, else buffer the elements until `finish`.
    #[inline]
    fn start(p: &'s mut Packer<'a>, len: Option<usize>, map: bool) -> Result<Self, Error> {
        let buffered = match len {
            Some(n) if map => p.map_len(n).map(|_| None)?,
            Some(n) => p.array_len(n).map(|_| None)?,
            None => Some((0, Vec::with_capacity(128))),
        };
        Ok(Compound { p, buffered, map })
    }

    #[inline]
    fn element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Error> {
        match &mut self.buffered {
            None => v.serialize(&mut *self.p),
            Some((n, buf)) => {
                *n += 1;
                v.serialize(&mut Packer { out: buf, named: self.p.named })
            }
        }
    }

    fn finish(self) -> Result<(), Error> {
        if let Some((n, buf)) = self.buffered {
            if self.map {
                self.p.map_len(n / 2)?;
            } else {
                self.p.array_len(n)?;
            }
            self.p.out.extend_from_slice(&buf);
        }
        Ok(())
    }
}

impl<'s, 'a> ser::Serializer for &'s mut Packer<'a> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Compound<'s, 'a>;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Compound<'s, 'a>;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    fn is_human_readable(&self) -> bool {
        false
    }

    #[inline]
    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.out.push(if v { 0xc3 } else { 0xc2 });
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), Error> {
        self.serialize_i64(v.into())
    }
    fn serialize_i16(self, v: i16) -> Result<(), Error> {
        self.serialize_i64(v.into())
    }
    fn serialize_i32(self, v: i32) -> Result<(), Error> {
        self.serialize_i64(v.into())
    }
    #[inline]
    fn serialize_i64(self, v: i64) -> Result<(), Error> {
        self.sint(v);
        Ok(())
    }
    fn serialize_i128(self, v: i128) -> Result<(), Error> {
        self.serialize_bytes(&v.to_be_bytes())
    }
    fn serialize_u8(self, v: u8) -> Result<(), Error> {
        self.serialize_u64(v.into())
    }
    fn serialize_u16(self, v: u16) -> Result<(), Error> {
        self.serialize_u64(v.into())
    }
    fn serialize_u32(self, v: u32) -> Result<(), Error> {
        self.serialize_u64(v.into())
    }
    #[inline]
    fn serialize_u64(self, v: u64) -> Result<(), Error> {
        self.uint(v);
        Ok(())
    }
    fn serialize_u128(self, v: u128) -> Result<(), Error> {
        self.serialize_bytes(&v.to_be_bytes())
    }
    fn serialize_f32(self, v: f32) -> Result<(), Error> {
        self.out.push(0xca);
        self.out.extend_from_slice(&v.to_be_bytes());
        Ok(())
    }
    fn serialize_f64(self, v: f64) -> Result<(), Error> {
        self.out.push(0xcb);
        self.out.extend_from_slice(&v.to_be_bytes());
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), Error> {
        self.str(v.encode_utf8(&mut [0; 4]))
    }
    #[inline]
    fn serialize_str(self, v: &str) -> Result<(), Error> {
        self.str(v)
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), Error> {
        self.len(v.len(), Some(0xc4), 0xc5, 0xc6)?;
        self.out.extend_from_slice(v);
        Ok(())
    }
    #[inline]
    fn serialize_none(self) -> Result<(), Error> {
        self.serialize_unit()
    }
    #[inline]
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<(), Error> {
        v.serialize(self)
    }
    #[inline]
    fn serialize_unit(self) -> Result<(), Error> {
        self.out.push(0xc0);
        Ok(())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), Error> {
        self.array_len(0)
    }
    fn serialize_unit_variant(self, _name: &'static str, _i: u32, variant: &'static str) -> Result<(), Error> {
        self.str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, name: &'static str, v: &T) -> Result<(), Error> {
        if name == EXT_STRUCT_NAME {
            return Err(Error("msgpack ext values are not written by the core".into()));
        }
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(self, _name: &'static str, _i: u32, variant: &'static str, v: &T) -> Result<(), Error> {
        self.map_len(1)?;
        self.str(variant)?;
        v.serialize(self)
    }
    #[inline]
    fn serialize_seq(self, len: Option<usize>) -> Result<Compound<'s, 'a>, Error> {
        Compound::start(self, len, false)
    }
    #[inline]
    fn serialize_tuple(self, len: usize) -> Result<Self, Error> {
        self.array_len(len)?;
        Ok(self)
    }
    fn serialize_tuple_struct(self, _name: &'static str, len: usize) -> Result<Self, Error> {
        self.array_len(len)?;
        Ok(self)
    }
    fn serialize_tuple_variant(self, _name: &'static str, _i: u32, variant: &'static str, len: usize) -> Result<Self, Error> {
        self.map_len(1)?;
        self.str(variant)?;
        self.array_len(len)?;
        Ok(self)
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Compound<'s, 'a>, Error> {
        Compound::start(self, len, true)
    }
    #[inline]
    fn serialize_struct(self, _name: &'static str, len: usize) -> Result<Self, Error> {
        if self.named {
            self.map_len(len)?;
        } else {
            self.array_len(len)?;
        }
        Ok(self)
    }
    fn serialize_struct_variant(self, name: &'static str, _i: u32, variant: &'static str, len: usize) -> Result<Self, Error> {
        self.map_len(1)?;
        self.str(variant)?;
        self.serialize_struct(name, len)
    }
}

impl ser::SerializeSeq for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    #[inline]
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Error> {
        self.element(v)
    }
    fn end(self) -> Result<(), Error> {
        self.finish()
    }
}

impl ser::SerializeMap for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, k: &T) -> Result<(), Error> {
        self.element(k)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Error> {
        self.element(v)
    }
    fn end(self) -> Result<(), Error> {
        self.finish()
    }
}

/// Tuples, tuple structs and tuple variants: their elements follow the header in place.
macro_rules! elements_in_place {
    ($($trait:ident::$method:ident),*) => {$(
        impl ser::$trait for &mut Packer<'_> {
            type Ok = ();
            type Error = Error;
            #[inline]
            fn $method<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Error> {
                v.serialize(&mut **self)
            }
            fn end(self) -> Result<(), Error> {
                Ok(())
            }
        }
    )*};
}

elements_in_place!(SerializeTuple::serialize_element, SerializeTupleStruct::serialize_field, SerializeTupleVariant::serialize_field);

impl ser::SerializeStruct for &mut Packer<'_> {
    type Ok = ();
    type Error = Error;
    #[inline]
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, v: &T) -> Result<(), Error> {
        if self.named {
            self.str(key)?;
        }
        v.serialize(&mut **self)
    }
    fn end(self) -> Result<(), Error> {
        Ok(())
    }
}

impl ser::SerializeStructVariant for &mut Packer<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, v: &T) -> Result<(), Error> {
        ser::SerializeStruct::serialize_field(self, key, v)
    }
    fn end(self) -> Result<(), Error> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn same<T: Serialize + ?Sized>(v: &T) {
        let mut a = vec![];
        write_named(&mut a, v).unwrap();
        assert_eq!(a, rmp_serde::to_vec_named(v).unwrap(), "named");
        let mut b = vec![];
        write_compact(&mut b, v).unwrap();
        assert_eq!(b, rmp_serde::to_vec(v).unwrap(), "compact");
    }

    #[derive(serde::Serialize)]
    struct Inner {
        a: i64,
        #[serde(skip_serializing_if = "Option::is_none")]
        b: Option<String>,
    }

    #[derive(serde::Serialize)]
    #[serde(tag = "op", rename_all = "snake_case")]
    enum Tagged {
        One { x: u32 },
        Two,
    }

    #[derive(serde::Serialize)]
    enum External {
        Unit,
        New(i8),
        Tup(u8, String),
        Rec { k: bool },
    }

    #[derive(serde::Serialize)]
    struct Wrap(u16);

    #[derive(serde::Serialize)]
    struct Pair(i32, Option<()>);

    #[derive(serde::Serialize)]
    struct UnitS;

    #[test]
    fn integers_at_every_marker_boundary() {
        let edges: Vec<i64> = vec![
            0, 1, 31, 32, 127, 128, 255, 256, 65_535, 65_536, (1 << 32) - 1, 1 << 32, i64::MAX,
            -1, -31, -32, -33, -127, -128, -129, -32_767, -32_768, -32_769, -(1 << 31) + 1, -(1 << 31), -(1 << 31) - 1, i64::MIN,
        ];
        for v in &edges {
            same(v);
            same(&(*v as i32));
            same(&(*v as i16));
            same(&(*v as i8));
            same(&(*v as u64));
            same(&(*v as u32));
            same(&(*v as u16));
            same(&(*v as u8));
        }
        same(&u64::MAX);
        same(&(i128::MIN, u128::MAX));
        same(&(1.5f32, -2.25f64, 'é', true, false));
    }

    #[test]
    fn strings_bytes_and_lengths_at_every_marker_boundary() {
        for n in [0, 1, 15, 16, 31, 32, 255, 256, 65_535, 65_536] {
            same(&"x".repeat(n));
            same(&serde_bytes::ByteBuf::from(vec![7u8; n]));
            same(&vec![1u8; n]);
            same(&(0..n as u32).map(|i| (i, i)).collect::<BTreeMap<_, _>>());
        }
    }

    #[test]
    fn structs_enums_options_and_unknown_lengths() {
        same(&Inner { a: -5, b: None });
        same(&Inner { a: 1 << 40, b: Some("é".repeat(20)) });
        same(&vec![Tagged::One { x: 70_000 }, Tagged::Two]);
        same(&vec![External::Unit, External::New(-100), External::Tup(200, "t".into()), External::Rec { k: true }]);
        same(&(Wrap(300), Pair(-70_000, Some(())), UnitS, None::<u8>, Some(Some(3u8)), ()));
        same(&[[1u8, 2], [3, 4]]);
        // an iterator without an exact size: rmp_serde counts it and writes the length after
        struct Uncounted(Vec<u32>);
        impl Serialize for Uncounted {
            fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_seq(self.0.iter().filter(|_| true))
            }
        }
        struct UncountedMap(Vec<(String, Inner)>);
        impl Serialize for UncountedMap {
            fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_map(self.0.iter().filter(|_| true).map(|(k, v)| (k, v)))
            }
        }
        same(&Uncounted((0..40).collect()));
        same(&UncountedMap((0..20).map(|i| (format!("k{i}"), Inner { a: i, b: None })).collect()));
    }
}
