//! cty types and values, and their two wire encodings (msgpack for `DynamicValue`, JSON for stored
//! state and type constraints).
//!
//! Terraform encodes every value against a type it and the provider agree on (the schema), so
//! decoding always takes the expected [`Type`]. Unknown values travel as a msgpack extension; nulls
//! as msgpack nil; numbers as an int, a float, or (for values neither can hold exactly) a decimal
//! string.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value as Json;

/// A cty type, as used in schemas and type constraints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Type {
    Bool,
    Number,
    String,
    /// `cty.DynamicPseudoType`: the value carries its own type on the wire.
    Dynamic,
    List(Box<Type>),
    Set(Box<Type>),
    Map(Box<Type>),
    Object(BTreeMap<String, Type>),
    Tuple(Vec<Type>),
}

impl Type {
    pub fn list(t: Type) -> Type {
        Type::List(Box::new(t))
    }
    pub fn set(t: Type) -> Type {
        Type::Set(Box::new(t))
    }
    pub fn map(t: Type) -> Type {
        Type::Map(Box::new(t))
    }
    /// An object type of named attributes.
    pub fn object<'a>(attributes: impl IntoIterator<Item = (&'a str, Type)>) -> Type {
        Type::Object(attributes.into_iter().map(|(name, t)| (name.to_string(), t)).collect())
    }

    /// The JSON form Terraform uses for types (`"string"`, `["list","string"]`, ...).
    pub fn to_json(&self) -> Json {
        match self {
            Type::Bool => Json::from("bool"),
            Type::Number => Json::from("number"),
            Type::String => Json::from("string"),
            Type::Dynamic => Json::from("dynamic"),
            Type::List(t) => Json::Array(vec!["list".into(), t.to_json()]),
            Type::Set(t) => Json::Array(vec!["set".into(), t.to_json()]),
            Type::Map(t) => Json::Array(vec!["map".into(), t.to_json()]),
            Type::Object(attrs) => Json::Array(vec![
                "object".into(),
                Json::Object(attrs.iter().map(|(k, t)| (k.clone(), t.to_json())).collect()),
            ]),
            Type::Tuple(elems) => {
                Json::Array(vec!["tuple".into(), Json::Array(elems.iter().map(Type::to_json).collect())])
            }
        }
    }

    pub fn from_json(json: &Json) -> Result<Type, ValueError> {
        let bad = || ValueError::new(format!("not a type: {json}"));
        match json {
            Json::String(s) => match s.as_str() {
                "bool" => Ok(Type::Bool),
                "number" => Ok(Type::Number),
                "string" => Ok(Type::String),
                "dynamic" => Ok(Type::Dynamic),
                _ => Err(bad()),
            },
            Json::Array(parts) if parts.len() >= 2 => {
                let kind = parts[0].as_str().ok_or_else(bad)?;
                match kind {
                    "list" => Ok(Type::list(Type::from_json(&parts[1])?)),
                    "set" => Ok(Type::set(Type::from_json(&parts[1])?)),
                    "map" => Ok(Type::map(Type::from_json(&parts[1])?)),
                    "object" => {
                        let attrs = parts[1].as_object().ok_or_else(bad)?;
                        let mut out = BTreeMap::new();
                        for (k, v) in attrs {
                            out.insert(k.clone(), Type::from_json(v)?);
                        }
                        Ok(Type::Object(out))
                    }
                    "tuple" => {
                        let elems = parts[1].as_array().ok_or_else(bad)?;
                        Ok(Type::Tuple(elems.iter().map(Type::from_json).collect::<Result<_, _>>()?))
                    }
                    _ => Err(bad()),
                }
            }
            _ => Err(bad()),
        }
    }
}

/// A cty number. Integers and floats are kept apart so that what the user wrote round-trips
/// exactly; `Big` holds a decimal string for values outside both.
#[derive(Clone, Debug)]
pub enum Number {
    Int(i64),
    Float(f64),
    Big(String),
}

impl Number {
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Number::Int(i) => Some(*i as f64),
            Number::Float(f) => Some(*f),
            Number::Big(s) => s.parse().ok(),
        }
    }
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Number::Int(i) => Some(*i),
            Number::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(*f as i64),
            _ => None,
        }
    }
    /// `x` to `significant` digits as a decimal, for a computed fraction a provider reports.
    /// A float64 that is not a short decimal does not survive Terraform's round trip through state
    /// (512-bit big.Float, written in decimal): the same value would plan as a change. A decimal
    /// string travels exactly.
    pub fn decimal(x: f64, significant: usize) -> Number {
        if x == 0.0 || !x.is_finite() {
            return Number::Int(0);
        }
        let magnitude = x.abs().log10().floor() as i64;
        let places = (significant as i64 - 1 - magnitude).clamp(0, 30) as usize;
        let text = format!("{x:.places$}");
        let text = if text.contains('.') { text.trim_end_matches('0').trim_end_matches('.') } else { &text };
        match text.parse::<i64>() {
            Ok(i) => Number::Int(i),
            Err(_) => Number::Big(text.to_string()),
        }
    }

    fn canonical(&self) -> Number {
        match self {
            Number::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Number::Int(*f as i64),
            Number::Big(s) => match s.parse::<i64>() {
                Ok(i) => Number::Int(i),
                Err(_) => self.clone(),
            },
            other => other.clone(),
        }
    }
}

impl PartialEq for Number {
    fn eq(&self, other: &Number) -> bool {
        match (self.canonical(), other.canonical()) {
            (Number::Int(a), Number::Int(b)) => a == b,
            (Number::Big(a), Number::Big(b)) => a == b || same_decimal(&a, &b),
            (Number::Big(a), Number::Int(i)) | (Number::Int(i), Number::Big(a)) => same_decimal(&a, &i.to_string()),
            (a, b) => a.as_f64() == b.as_f64(),
        }
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Number::Int(i) => write!(f, "{i}"),
            Number::Float(x) => write!(f, "{x}"),
            Number::Big(s) => f.write_str(s),
        }
    }
}

/// A cty value. Objects and maps are kept in key order, which is also the order Terraform uses.
#[derive(Clone, Debug, PartialEq, Default)]
pub enum Value {
    #[default]
    Null,
    Unknown,
    Bool(bool),
    Number(Number),
    String(String),
    List(Vec<Value>),
    Set(Vec<Value>),
    Map(BTreeMap<String, Value>),
    Object(BTreeMap<String, Value>),
    Tuple(Vec<Value>),
    /// A value of a dynamic-typed attribute, with the concrete type it was sent with.
    Dynamic(Type, Box<Value>),
}

static NULL: Value = Value::Null;

impl Value {
    pub fn string(s: impl Into<String>) -> Value {
        Value::String(s.into())
    }
    pub fn int(i: i64) -> Value {
        Value::Number(Number::Int(i))
    }
    pub fn float(f: f64) -> Value {
        Value::Number(Number::Float(f))
    }
    pub fn object<K: Into<String>>(attrs: impl IntoIterator<Item = (K, Value)>) -> Value {
        Value::Object(attrs.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }
    /// A string value, or null when `s` is `None`.
    pub fn opt_string(s: Option<impl Into<String>>) -> Value {
        s.map(|s| Value::String(s.into())).unwrap_or(Value::Null)
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
    pub fn is_unknown(&self) -> bool {
        matches!(self, Value::Unknown)
    }
    /// True when neither this value nor anything inside it is unknown.
    pub fn is_wholly_known(&self) -> bool {
        match self {
            Value::Unknown => false,
            Value::List(v) | Value::Set(v) | Value::Tuple(v) => v.iter().all(Value::is_wholly_known),
            Value::Map(m) | Value::Object(m) => m.values().all(Value::is_wholly_known),
            Value::Dynamic(_, v) => v.is_wholly_known(),
            _ => true,
        }
    }

    /// The attribute `name` of an object (null when absent or when `self` is not an object).
    pub fn get(&self, name: &str) -> &Value {
        match self {
            Value::Object(m) | Value::Map(m) => m.get(name).unwrap_or(&NULL),
            _ => &NULL,
        }
    }
    /// Sets attribute `name` of an object value; does nothing on other values.
    pub fn set(&mut self, name: &str, v: Value) {
        if let Value::Object(m) = self {
            m.insert(name.to_string(), v);
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }
    pub fn as_number(&self) -> Option<&Number> {
        match self {
            Value::Number(n) => Some(n),
            _ => None,
        }
    }
    pub fn as_i64(&self) -> Option<i64> {
        self.as_number().and_then(Number::as_i64)
    }
    pub fn as_f64(&self) -> Option<f64> {
        self.as_number().and_then(Number::as_f64)
    }
    /// Elements of a list, set or tuple; an empty slice for null or other values.
    pub fn elements(&self) -> &[Value] {
        match self {
            Value::List(v) | Value::Set(v) | Value::Tuple(v) => v,
            _ => &[],
        }
    }
    /// Entries of a map or object; `None` for null or other values.
    pub fn entries(&self) -> Option<&BTreeMap<String, Value>> {
        match self {
            Value::Map(m) | Value::Object(m) => Some(m),
            _ => None,
        }
    }

    /// A null value "shaped" for `ty`: objects become objects of nulls, everything else null.
    /// Used to build the empty state of a resource.
    pub fn null_object(ty: &Type) -> Value {
        match ty {
            Type::Object(attrs) => Value::Object(attrs.keys().map(|k| (k.clone(), Value::Null)).collect()),
            _ => Value::Null,
        }
    }
}

/// A value did not match the type it was decoded against.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ValueError(String);

impl ValueError {
    pub fn new(msg: impl Into<String>) -> Self {
        ValueError(msg.into())
    }
}

// ---------------------------------------------------------------------------------------------
// msgpack

/// Decodes a msgpack-encoded value of type `ty`.
pub fn from_msgpack(bytes: &[u8], ty: &Type) -> Result<Value, ValueError> {
    let mut rd = bytes;
    let raw = rmpv::decode::read_value(&mut rd).map_err(|e| ValueError::new(format!("invalid msgpack: {e}")))?;
    from_rmpv(&raw, ty, 0)
}

/// How deep values may nest. Schemas nest a few levels; only dynamic values (whose type travels
/// with them) could nest deeper, and a hostile message must get an error, not a stack overflow.
const MAX_DEPTH: usize = 64;

fn from_rmpv(raw: &rmpv::Value, ty: &Type, depth: usize) -> Result<Value, ValueError> {
    if depth > MAX_DEPTH {
        return Err(ValueError::new(format!("value nested more than {MAX_DEPTH} levels deep")));
    }
    let depth = depth + 1;
    use rmpv::Value as R;
    let mismatch = || ValueError::new(format!("msgpack value {raw} does not fit type {}", ty.to_json()));
    match raw {
        R::Nil => return Ok(Value::Null),
        // Unknown values (plain, code 0, or refined, code 12) are extensions; refinements are
        // advisory and we treat every extension as a plain unknown.
        R::Ext(_, _) => return Ok(Value::Unknown),
        _ => {}
    }
    match ty {
        Type::Bool => raw.as_bool().map(Value::Bool).ok_or_else(mismatch),
        Type::String => match raw {
            R::String(s) => {
                Ok(Value::String(s.as_str().ok_or_else(|| ValueError::new("string is not UTF-8"))?.to_string()))
            }
            _ => Err(mismatch()),
        },
        Type::Number => match raw {
            R::Integer(i) => {
                if let Some(i) = i.as_i64() {
                    Ok(Value::Number(Number::Int(i)))
                } else {
                    Ok(Value::Number(Number::Big(i.to_string())))
                }
            }
            R::F32(f) => Ok(Value::Number(Number::Float(*f as f64))),
            R::F64(f) => Ok(Value::Number(Number::Float(*f))),
            R::String(s) => {
                let s = s.as_str().ok_or_else(mismatch)?;
                Ok(Value::Number(parse_number(s).ok_or_else(mismatch)?))
            }
            _ => Err(mismatch()),
        },
        Type::List(et) | Type::Set(et) => {
            let items = raw.as_array().ok_or_else(mismatch)?;
            let vals = items.iter().map(|v| from_rmpv(v, et, depth)).collect::<Result<Vec<_>, _>>()?;
            Ok(if matches!(ty, Type::List(_)) { Value::List(vals) } else { Value::Set(vals) })
        }
        Type::Tuple(ets) => {
            let items = raw.as_array().ok_or_else(mismatch)?;
            if items.len() != ets.len() {
                return Err(mismatch());
            }
            Ok(Value::Tuple(items.iter().zip(ets).map(|(v, t)| from_rmpv(v, t, depth)).collect::<Result<_, _>>()?))
        }
        Type::Map(et) => {
            let entries = raw.as_map().ok_or_else(mismatch)?;
            let mut out = BTreeMap::new();
            for (k, v) in entries {
                let k = k.as_str().ok_or_else(mismatch)?;
                out.insert(k.to_string(), from_rmpv(v, et, depth)?);
            }
            Ok(Value::Map(out))
        }
        Type::Object(attrs) => {
            let entries = raw.as_map().ok_or_else(mismatch)?;
            let mut out: BTreeMap<String, Value> = attrs.keys().map(|k| (k.clone(), Value::Null)).collect();
            for (k, v) in entries {
                let k = k.as_str().ok_or_else(mismatch)?;
                let at = attrs.get(k).ok_or_else(|| ValueError::new(format!("unexpected attribute {k:?}")))?;
                out.insert(k.to_string(), from_rmpv(v, at, depth)?);
            }
            Ok(Value::Object(out))
        }
        Type::Dynamic => {
            // [type as JSON bytes, value]
            let pair = raw.as_array().ok_or_else(mismatch)?;
            if pair.len() != 2 {
                return Err(mismatch());
            }
            let tjson = match &pair[0] {
                R::Binary(b) => serde_json::from_slice::<Json>(b),
                R::String(s) => serde_json::from_slice::<Json>(s.as_bytes()),
                _ => return Err(mismatch()),
            }
            .map_err(|e| ValueError::new(format!("bad dynamic type: {e}")))?;
            let t = Type::from_json(&tjson)?;
            let v = from_rmpv(&pair[1], &t, depth)?;
            Ok(Value::Dynamic(t, Box::new(v)))
        }
    }
}

/// A number Terraform sent as text (msgpack string, or JSON). cty numbers are arbitrary-precision
/// decimals, and Terraform checks that a planned value equals the configuration exactly (cty's
/// `Value.Equals`; before cty 1.13 by `big.Float` comparison, since by decimal text), so a value
/// that is not exactly an i64 is kept as its text and sent back as that text — converting it to
/// f64 changes `0.1` or `-1e300` into a neighbouring number, and Terraform then stops with
/// "Provider produced invalid plan". `None` for text that is not a decimal number.
fn parse_number(s: &str) -> Option<Number> {
    if let Ok(i) = s.parse::<i64>() {
        return Some(Number::Int(i));
    }
    is_decimal(s).then(|| Number::Big(s.to_string()))
}

/// Whether two decimal texts have the same value; text that is not a decimal equals only itself.
fn same_decimal(a: &str, b: &str) -> bool {
    match (decimal_key(a), decimal_key(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// A decimal's value as (negative, significant digits, exponent of the last digit), so that
/// `0.10`, `1e-1` and `0.1` compare equal exactly, without a trip through f64. Exponents are
/// computed in i128; one of more than 36 digits (which cty never writes) gives `None`, so such
/// text equals only itself.
fn decimal_key(s: &str) -> Option<(bool, String, i128)> {
    if !is_decimal(s) {
        return None;
    }
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (mantissa, exp) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, "0"),
    };
    let exp_digits = exp.trim_start_matches(['+', '-']).trim_start_matches('0');
    if exp_digits.len() > 36 || mantissa.len() > (1 << 20) {
        return None;
    }
    let exp: i128 = exp.strip_prefix('+').unwrap_or(exp).parse().ok()?;
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = format!("{int}{frac}");
    let trimmed_end = digits.trim_end_matches('0');
    let significant = trimmed_end.trim_start_matches('0');
    if significant.is_empty() {
        return Some((false, String::new(), 0));
    }
    // The exponent of the last significant digit.
    let exp = exp - frac.len() as i128 + (digits.len() - trimmed_end.len()) as i128;
    Some((neg, significant.to_string(), exp))
}

/// `-?DIGITS(.DIGITS)?([eE][+-]?DIGITS)?`: the number syntax of cty (and JSON).
fn is_decimal(s: &str) -> bool {
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    let s = s.strip_prefix('-').unwrap_or(s);
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let mantissa_ok = match mantissa.split_once('.') {
        Some((int, frac)) => digits(int) && digits(frac),
        None => digits(mantissa),
    };
    let exponent_ok = exponent.is_none_or(|e| digits(e.strip_prefix(['+', '-']).unwrap_or(e)));
    mantissa_ok && exponent_ok
}

/// Encodes `v` as msgpack against type `ty`.
pub fn to_msgpack(v: &Value, ty: &Type) -> Result<Vec<u8>, ValueError> {
    let raw = to_rmpv(v, ty)?;
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &raw).map_err(|e| ValueError::new(format!("msgpack encoding failed: {e}")))?;
    Ok(out)
}

fn to_rmpv(v: &Value, ty: &Type) -> Result<rmpv::Value, ValueError> {
    use rmpv::Value as R;
    let mismatch = || ValueError::new(format!("value {v:?} does not fit type {}", ty.to_json()));
    Ok(match (v, ty) {
        (Value::Null, Type::Dynamic) => {
            // A null of dynamic type is encoded as a plain nil.
            R::Nil
        }
        (Value::Null, _) => R::Nil,
        (Value::Unknown, _) => R::Ext(0, vec![0]),
        (Value::Bool(b), Type::Bool) => R::Boolean(*b),
        (Value::String(s), Type::String) => R::String(s.clone().into()),
        (Value::Number(n), Type::Number) => match n {
            Number::Int(i) => R::from(*i),
            Number::Float(f) => {
                if f.fract() == 0.0 && f.abs() < 9.0e15 {
                    R::from(*f as i64)
                } else {
                    R::F64(*f)
                }
            }
            Number::Big(s) => R::String(s.clone().into()),
        },
        (Value::List(items) | Value::Set(items) | Value::Tuple(items), Type::List(et) | Type::Set(et)) => {
            R::Array(items.iter().map(|i| to_rmpv(i, et)).collect::<Result<_, _>>()?)
        }
        (Value::Tuple(items) | Value::List(items), Type::Tuple(ets)) if items.len() == ets.len() => {
            R::Array(items.iter().zip(ets).map(|(i, t)| to_rmpv(i, t)).collect::<Result<_, _>>()?)
        }
        (Value::Map(m) | Value::Object(m), Type::Map(et)) => R::Map(
            m.iter()
                .map(|(k, v)| Ok((R::String(k.clone().into()), to_rmpv(v, et)?)))
                .collect::<Result<_, ValueError>>()?,
        ),
        (Value::Object(m), Type::Object(attrs)) => R::Map(
            attrs
                .iter()
                .map(|(k, at)| {
                    let av = m.get(k).unwrap_or(&NULL);
                    Ok((R::String(k.clone().into()), to_rmpv(av, at)?))
                })
                .collect::<Result<_, ValueError>>()?,
        ),
        (Value::Dynamic(t, inner), Type::Dynamic) => {
            let tj = serde_json::to_vec(&t.to_json()).expect("type JSON");
            R::Array(vec![R::Binary(tj), to_rmpv(inner, t)?])
        }
        (other, Type::Dynamic) => {
            let t = infer_type(other).ok_or_else(mismatch)?;
            let tj = serde_json::to_vec(&t.to_json()).expect("type JSON");
            R::Array(vec![R::Binary(tj), to_rmpv(other, &t)?])
        }
        _ => return Err(mismatch()),
    })
}

/// The type of a wholly-known value that carries no type of its own (for dynamic attributes).
fn infer_type(v: &Value) -> Option<Type> {
    Some(match v {
        Value::Bool(_) => Type::Bool,
        Value::Number(_) => Type::Number,
        Value::String(_) => Type::String,
        Value::Object(m) => {
            Type::Object(m.iter().map(|(k, v)| Some((k.clone(), infer_type(v)?))).collect::<Option<_>>()?)
        }
        Value::Tuple(items) | Value::List(items) => Type::Tuple(items.iter().map(infer_type).collect::<Option<_>>()?),
        Value::Dynamic(t, _) => t.clone(),
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------------
// JSON

/// Decodes the JSON form of a value of type `ty` (stored state, `DynamicValue.json`).
pub fn from_json(json: &Json, ty: &Type) -> Result<Value, ValueError> {
    let mismatch = || ValueError::new(format!("JSON value {json} does not fit type {}", ty.to_json()));
    if json.is_null() {
        return Ok(Value::Null);
    }
    match ty {
        Type::Bool => json.as_bool().map(Value::Bool).ok_or_else(mismatch),
        Type::String => json.as_str().map(Value::string).ok_or_else(mismatch),
        Type::Number => match json {
            Json::Number(n) => Ok(Value::Number(if let Some(i) = n.as_i64() {
                Number::Int(i)
            } else {
                parse_number(&n.to_string()).ok_or_else(mismatch)?
            })),
            Json::String(s) => Ok(Value::Number(parse_number(s).ok_or_else(mismatch)?)),
            _ => Err(mismatch()),
        },
        Type::List(et) | Type::Set(et) => {
            let items = json.as_array().ok_or_else(mismatch)?;
            let vals = items.iter().map(|v| from_json(v, et)).collect::<Result<Vec<_>, _>>()?;
            Ok(if matches!(ty, Type::List(_)) { Value::List(vals) } else { Value::Set(vals) })
        }
        Type::Tuple(ets) => {
            let items = json.as_array().ok_or_else(mismatch)?;
            if items.len() != ets.len() {
                return Err(mismatch());
            }
            Ok(Value::Tuple(items.iter().zip(ets).map(|(v, t)| from_json(v, t)).collect::<Result<_, _>>()?))
        }
        Type::Map(et) => {
            let obj = json.as_object().ok_or_else(mismatch)?;
            Ok(Value::Map(
                obj.iter().map(|(k, v)| Ok((k.clone(), from_json(v, et)?))).collect::<Result<_, ValueError>>()?,
            ))
        }
        Type::Object(attrs) => {
            let obj = json.as_object().ok_or_else(mismatch)?;
            let mut out: BTreeMap<String, Value> = attrs.keys().map(|k| (k.clone(), Value::Null)).collect();
            for (k, v) in obj {
                // State written by an older schema may carry attributes we no longer have.
                if let Some(at) = attrs.get(k) {
                    out.insert(k.clone(), from_json(v, at)?);
                }
            }
            Ok(Value::Object(out))
        }
        Type::Dynamic => {
            let obj = json.as_object().ok_or_else(mismatch)?;
            let t = Type::from_json(obj.get("type").ok_or_else(mismatch)?)?;
            let v = from_json(obj.get("value").unwrap_or(&Json::Null), &t)?;
            Ok(Value::Dynamic(t, Box::new(v)))
        }
    }
}

/// The JSON form of a wholly-known value (unknowns become null).
pub fn to_json(v: &Value) -> Json {
    match v {
        Value::Null | Value::Unknown => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Number(Number::Int(i)) => Json::from(*i),
        Value::Number(Number::Float(f)) => Json::from(*f),
        Value::Number(Number::Big(s)) => {
            s.parse::<serde_json::Number>().map(Json::Number).unwrap_or_else(|_| Json::String(s.clone()))
        }
        Value::String(s) => Json::String(s.clone()),
        Value::List(items) | Value::Set(items) | Value::Tuple(items) => {
            Json::Array(items.iter().map(to_json).collect())
        }
        Value::Map(m) | Value::Object(m) => Json::Object(m.iter().map(|(k, v)| (k.clone(), to_json(v))).collect()),
        Value::Dynamic(_, inner) => to_json(inner),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj_type() -> Type {
        Type::Object(BTreeMap::from([
            ("name".to_string(), Type::String),
            ("rows".to_string(), Type::Number),
            ("ok".to_string(), Type::Bool),
            ("tags".to_string(), Type::map(Type::String)),
            ("cols".to_string(), Type::list(Type::Object(BTreeMap::from([("n".to_string(), Type::Number)])))),
        ]))
    }

    #[test]
    fn msgpack_round_trip_keeps_unknowns_nulls_and_numbers() {
        let v = Value::object([
            ("name", Value::string("x")),
            ("rows", Value::float(1.5)),
            ("ok", Value::Unknown),
            ("tags", Value::Null),
            ("cols", Value::List(vec![Value::object([("n", Value::int(-3))])])),
        ]);
        let bytes = to_msgpack(&v, &obj_type()).unwrap();
        let back = from_msgpack(&bytes, &obj_type()).unwrap();
        assert_eq!(back, v);
        assert!(!back.is_wholly_known());
    }

    #[test]
    fn decimals_keep_their_significant_digits_and_no_more() {
        assert_eq!(Number::decimal(0.9999991696374422, 6).to_string(), "0.999999");
        assert_eq!(Number::decimal(0.014973057673588523, 6).to_string(), "0.0149731");
        assert_eq!(Number::decimal(1.4371424, 4).to_string(), "1.437");
        assert_eq!(Number::decimal(2.0000001, 4), Number::Int(2));
        assert_eq!(Number::decimal(1e-9, 3).to_string(), "0.000000001");
        assert_eq!(Number::decimal(0.0, 3), Number::Int(0));
        let v = Value::Number(Number::decimal(0.9999991696374422, 6));
        let t = Type::Number;
        assert_eq!(from_msgpack(&to_msgpack(&v, &t).unwrap(), &t).unwrap(), v);
    }

    #[test]
    fn big_numbers_travel_as_strings() {
        let raw = rmpv::Value::String("123456789012345678901234567890".into());
        let mut buf = Vec::new();
        rmpv::encode::write_value(&mut buf, &raw).unwrap();
        let v = from_msgpack(&buf, &Type::Number).unwrap();
        assert_eq!(v, Value::Number(Number::Big("123456789012345678901234567890".into())));
        assert_eq!(to_msgpack(&v, &Type::Number).unwrap(), buf);
    }

    #[test]
    fn numbers_sent_as_text_go_back_as_the_same_text() {
        // What cty sends for values that are neither an exact i64 nor an exact f64.
        for text in
            ["0.1", "-1000000000000000000000000000000", "12345678901234567890.123", "1e400", "0.30000000000000004"]
        {
            let mut buf = Vec::new();
            rmpv::encode::write_value(&mut buf, &rmpv::Value::String(text.into())).unwrap();
            let v = from_msgpack(&buf, &Type::Number).unwrap();
            assert_eq!(v, Value::Number(Number::Big(text.into())), "{text}");
            assert_eq!(to_msgpack(&v, &Type::Number).unwrap(), buf, "{text}");
            // And through stored state (JSON), digit for digit (serde_json may spell an exponent `e+`).
            let json = serde_json::to_string(&to_json(&v)).unwrap();
            assert_eq!(decimal_key(&json), decimal_key(text), "{text} became {json}");
            let back = from_json(&serde_json::from_str(&json).unwrap(), &Type::Number).unwrap();
            assert_eq!(back, v, "{text}");
        }
        for bad in ["", "-", "1.", ".5", "1e", "0x10", "NaN", "inf", "1e+", "--1"] {
            let mut buf = Vec::new();
            rmpv::encode::write_value(&mut buf, &rmpv::Value::String(bad.into())).unwrap();
            assert!(from_msgpack(&buf, &Type::Number).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn decimals_compare_exactly() {
        let big = |s: &str| Value::Number(Number::Big(s.into()));
        assert_eq!(big("0.10"), big("1e-1"));
        assert_eq!(big("100"), Value::int(100));
        assert_eq!(big("1.5e1"), big("15.0"));
        assert_ne!(big("12345678901234567890.123"), big("12345678901234567890.124"));
        assert_ne!(big("-1"), big("1"));
        assert_eq!(big("-0.0"), big("0"));
        // Exponents of any length, without overflow or conflation.
        assert_ne!(big("0.1e-9223372036854775808"), big("1"));
        assert_ne!(big("10e9223372036854775807"), big("1"));
        assert_ne!(big("1e9223372036854775808"), big("2e9223372036854775808"));
        assert_eq!(big("10e9223372036854775807"), big("1e9223372036854775808"));
        assert_eq!(big("1e99999999999999999999999999999999999"), big("10e99999999999999999999999999999999998"));
        // Beyond 36 exponent digits only identical text is equal (cty never writes exponents).
        let huge = format!("1e{}", "9".repeat(40));
        assert_ne!(big(&huge), big(&format!("10e{}8", "9".repeat(39))));
        assert_eq!(big(&huge), big(&huge));
    }

    #[test]
    fn refined_unknown_extension_decodes_as_unknown() {
        // Terraform sends refined unknowns as extension 12 with a map payload.
        let raw = rmpv::Value::Ext(12, vec![0x81, 0x01, 0xc3]);
        let mut buf = Vec::new();
        rmpv::encode::write_value(&mut buf, &raw).unwrap();
        assert_eq!(from_msgpack(&buf, &Type::String).unwrap(), Value::Unknown);
    }

    #[test]
    fn json_decoding_drops_attributes_removed_from_the_schema() {
        let j = serde_json::json!({"name": "a", "rows": 3, "gone": true});
        let v = from_json(&j, &obj_type()).unwrap();
        assert_eq!(v.get("name").as_str(), Some("a"));
        assert_eq!(v.get("rows").as_i64(), Some(3));
        assert!(v.get("gone").is_null());
    }

    #[test]
    fn mismatched_values_are_errors_not_panics() {
        let mut buf = Vec::new();
        rmpv::encode::write_value(&mut buf, &rmpv::Value::from(3)).unwrap();
        assert!(from_msgpack(&buf, &Type::String).is_err());
        assert!(from_msgpack(&[0xa5, b'a'], &Type::String).is_err());
    }

    #[test]
    fn dynamic_values_carry_their_type() {
        let v = Value::Dynamic(Type::String, Box::new(Value::string("hi")));
        let bytes = to_msgpack(&v, &Type::Dynamic).unwrap();
        assert_eq!(from_msgpack(&bytes, &Type::Dynamic).unwrap(), v);
    }

    #[test]
    fn type_json_round_trips() {
        let t = obj_type();
        assert_eq!(Type::from_json(&t.to_json()).unwrap(), t);
    }

    #[test]
    fn int_and_float_compare_by_value() {
        assert_eq!(Value::int(2), Value::float(2.0));
        assert_ne!(Value::int(2), Value::float(2.5));
    }
}
