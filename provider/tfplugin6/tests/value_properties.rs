//! Property tests of the cty value encodings: msgpack decoding never panics whatever the bytes,
//! values that fit a type round-trip through msgpack and JSON, and numbers Terraform sends as
//! decimal text go back as the very same bytes.
//!
//! Case counts honour `PROPTEST_CASES` when it is set.

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::sample::select;
use tfplugin6::value::{Number, Type, Value, from_json, from_msgpack, to_json, to_msgpack};

/// The default number of cases, unless `PROPTEST_CASES` says otherwise.
fn cases(n: u32) -> ProptestConfig {
    let mut c = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = n;
    }
    c
}

// ---------------------------------------------------------------------------------------------
// Strategies

/// Strings with the awkward characters over-represented: quotes, escapes, controls, non-BMP.
fn arb_string() -> impl Strategy<Value = String> {
    let ch = prop_oneof![
        3 => any::<char>(),
        1 => select(vec!['"', '\'', '\\', '\n', '\r', '\t', '\0', '\u{7f}', 'é', '\u{2028}', '😀', '{', '[']),
        2 => proptest::char::range('a', 'z'),
    ];
    prop::collection::vec(ch, 0..12).prop_map(String::from_iter)
}

/// Text matching `-?DIGITS(.DIGITS)?([eE][+-]?DIGITS)?` with up to 400 digits in each part and an
/// exponent up to ±400 (written with or without leading zeros).
fn decimal_text() -> impl Strategy<Value = String> {
    let digits = |max: usize| {
        prop_oneof![
            3 => prop::collection::vec(proptest::char::range('0', '9'), 1..6),
            1 => prop::collection::vec(proptest::char::range('0', '9'), 1..=max),
        ]
        .prop_map(String::from_iter)
    };
    let exponent = (select(vec!["e", "E"]), select(vec!["", "+", "-"]), 0u32..=400, 0usize..3)
        .prop_map(|(e, sign, n, zeros)| format!("{e}{sign}{}{n}", "0".repeat(zeros)));
    (any::<bool>(), digits(400), prop::option::of(digits(400)), prop::option::of(exponent)).prop_map(
        |(neg, int, frac, exp)| {
            let mut s = String::new();
            if neg {
                s.push('-');
            }
            s.push_str(&int);
            if let Some(f) = frac {
                s.push('.');
                s.push_str(&f);
            }
            if let Some(e) = exp {
                s.push_str(&e);
            }
            s
        },
    )
}

fn arb_number() -> impl Strategy<Value = Number> {
    prop_oneof![
        any::<i64>().prop_map(Number::Int),
        select(vec![0, 1, -1, i64::MIN, i64::MAX, 9_000_000_000_000_000]).prop_map(Number::Int),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Number::Float),
        select(vec![0.0, -0.0, 0.1, 1.5, 2.0, 9.0e15, -9.0e15, 1e300, f64::MIN_POSITIVE, 5e-324, f64::MAX])
            .prop_map(Number::Float),
        decimal_text().prop_map(Number::Big),
    ]
}

fn attr_name() -> impl Strategy<Value = String> {
    prop_oneof![3 => "[a-z_][a-z0-9_]{0,8}", 1 => arb_string()]
}

/// A cty type, with `dynamic` only where `dynamic` is true (a dynamic value's own type never
/// contains `dynamic` here, which keeps the generated values finite).
fn arb_type(dynamic: bool) -> BoxedStrategy<Type> {
    let leaf = if dynamic {
        prop_oneof![Just(Type::Bool), Just(Type::Number), Just(Type::String), Just(Type::Dynamic)].boxed()
    } else {
        prop_oneof![Just(Type::Bool), Just(Type::Number), Just(Type::String)].boxed()
    };
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            inner.clone().prop_map(Type::list),
            inner.clone().prop_map(Type::set),
            inner.clone().prop_map(Type::map),
            prop::collection::btree_map(attr_name(), inner.clone(), 0..4).prop_map(Type::Object),
            prop::collection::vec(inner, 0..4).prop_map(Type::Tuple),
        ]
    })
    .boxed()
}

/// A value of type `ty`: null, unknown or known, at every level.
fn arb_value(ty: &Type) -> BoxedStrategy<Value> {
    prop_oneof![
        1 => Just(Value::Null),
        1 => Just(Value::Unknown),
        6 => arb_known(ty, true),
    ]
    .boxed()
}

/// A value of type `ty` that is not null or unknown at the top; below, nulls and unknowns appear
/// when `unknowns` (otherwise only nulls: JSON has no unknowns).
fn arb_known(ty: &Type, unknowns: bool) -> BoxedStrategy<Value> {
    let elem = |t: &Type| if unknowns { arb_value(t) } else { arb_json_value(t) };
    match ty {
        Type::Bool => any::<bool>().prop_map(Value::Bool).boxed(),
        Type::Number => arb_number().prop_map(Value::Number).boxed(),
        Type::String => arb_string().prop_map(Value::String).boxed(),
        Type::List(t) => prop::collection::vec(elem(t), 0..4).prop_map(Value::List).boxed(),
        Type::Set(t) => prop::collection::vec(elem(t), 0..4).prop_map(Value::Set).boxed(),
        Type::Map(t) => prop::collection::btree_map(arb_string(), elem(t), 0..4).prop_map(Value::Map).boxed(),
        Type::Object(attrs) => {
            let keys: Vec<String> = attrs.keys().cloned().collect();
            let vals: Vec<BoxedStrategy<Value>> = attrs.values().map(elem).collect();
            vals.prop_map(move |vs| Value::Object(keys.iter().cloned().zip(vs).collect())).boxed()
        }
        Type::Tuple(ts) => ts.iter().map(elem).collect::<Vec<_>>().prop_map(Value::Tuple).boxed(),
        Type::Dynamic => {
            let unknowns_inside = unknowns;
            arb_type(false)
                .prop_flat_map(move |t| {
                    let inner = if unknowns_inside { arb_value(&t) } else { arb_json_value(&t) };
                    inner.prop_map(move |v| Value::Dynamic(t.clone(), Box::new(v)))
                })
                .boxed()
        }
    }
}

/// A wholly-known value of type `ty` (nulls allowed).
fn arb_json_value(ty: &Type) -> BoxedStrategy<Value> {
    prop_oneof![1 => Just(Value::Null), 6 => arb_known(ty, false)].boxed()
}

fn arb_typed_value() -> impl Strategy<Value = (Type, Value)> {
    arb_type(true).prop_flat_map(|t| {
        let v = arb_value(&t);
        (Just(t), v)
    })
}

/// True when `ty` contains `dynamic` anywhere.
fn has_dynamic(ty: &Type) -> bool {
    match ty {
        Type::Dynamic => true,
        Type::List(t) | Type::Set(t) | Type::Map(t) => has_dynamic(t),
        Type::Object(attrs) => attrs.values().any(has_dynamic),
        Type::Tuple(ts) => ts.iter().any(has_dynamic),
        _ => false,
    }
}

/// Arbitrary msgpack, well-formed but of any shape: what a confused or hostile peer might send.
fn arb_rmpv() -> impl Strategy<Value = rmpv::Value> {
    use rmpv::Value as R;
    let type_json = select(vec![
        "\"string\"",
        "\"number\"",
        "\"bool\"",
        "\"dynamic\"",
        "[\"list\",\"number\"]",
        "[\"map\",\"string\"]",
        "[\"object\",{\"a\":\"number\"}]",
        "[\"tuple\",[\"bool\",\"string\"]]",
        "[\"set\"]",
        "[\"list\"",
        "{}",
        "[\"object\",[]]",
    ]);
    let leaf = prop_oneof![
        Just(R::Nil),
        any::<bool>().prop_map(R::Boolean),
        any::<i64>().prop_map(R::from),
        any::<u64>().prop_map(R::from),
        any::<f32>().prop_map(R::F32),
        any::<f64>().prop_map(R::F64),
        arb_string().prop_map(|s| R::String(s.into())),
        decimal_text().prop_map(|s| R::String(s.into())),
        prop::collection::vec(any::<u8>(), 0..8).prop_map(R::Binary),
        type_json.clone().prop_map(|t| R::Binary(t.as_bytes().to_vec())),
        type_json.prop_map(|t| R::String(t.into())),
        (any::<i8>(), prop::collection::vec(any::<u8>(), 0..4)).prop_map(|(t, d)| R::Ext(t, d)),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(R::Array),
            prop::collection::vec(
                (prop_oneof![attr_name().prop_map(|s| R::String(s.into())), inner.clone()], inner),
                0..4
            )
            .prop_map(R::Map),
        ]
    })
}

/// Bytes with msgpack markers over-represented, so that decoding gets past the first byte.
fn arb_msgpack_bytes() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        3 => any::<u8>(),
        2 => select(vec![
            0xc0, 0xc2, 0xc3, 0xc4, 0xc7, 0xca, 0xcb, 0xcc, 0xcf, 0xd0, 0xd3, 0xd4, 0xd9, 0xda, 0xdb, 0xdc, 0xdd,
            0xde, 0xdf, 0x90, 0x92, 0x9f, 0x80, 0x81, 0x8f, 0xa0, 0xa1, 0xa7, 0xbf, 0x00, 0x7f, 0xff, 0xe0,
        ]),
        1 => select(b"0123456789.-eE\"[]{},:".to_vec()),
    ];
    prop::collection::vec(byte, 0..4096)
}

fn decode_types() -> Vec<Type> {
    vec![
        Type::Number,
        Type::String,
        Type::Bool,
        Type::list(Type::Number),
        Type::set(Type::String),
        Type::map(Type::Dynamic),
        Type::Object(BTreeMap::from([
            ("a".to_string(), Type::Number),
            ("b".to_string(), Type::list(Type::String)),
            ("c".to_string(), Type::Dynamic),
        ])),
        Type::Tuple(vec![Type::Bool, Type::Number]),
        Type::Dynamic,
    ]
}

fn msgpack_string(text: &str) -> Vec<u8> {
    let mut buf = Vec::new();
    rmpv::encode::write_value(&mut buf, &rmpv::Value::String(text.into())).unwrap();
    buf
}

fn msgpack(v: &rmpv::Value) -> Vec<u8> {
    let mut buf = Vec::new();
    rmpv::encode::write_value(&mut buf, v).unwrap();
    buf
}

/// Whatever decoded must encode again against the same type, and that encoding must decode.
fn decoded_values_encode_again(v: &Value, ty: &Type) -> Result<(), TestCaseError> {
    let again = to_msgpack(v, ty).map_err(|e| TestCaseError::fail(format!("decoded {v:?} does not encode: {e}")))?;
    from_msgpack(&again, ty).map_err(|e| TestCaseError::fail(format!("re-encoded {v:?} does not decode: {e}")))?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Properties

proptest! {
    #![proptest_config(cases(256))]

    /// (a) Arbitrary bytes never panic the decoder, for any expected type; what does decode
    /// encodes again.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in arb_msgpack_bytes(), ty in select(decode_types())) {
        if let Ok(v) = from_msgpack(&bytes, &ty) {
            decoded_values_encode_again(&v, &ty)?;
        }
    }

    /// (a') Well-formed msgpack of any shape never panics the decoder either.
    #[test]
    fn arbitrary_msgpack_never_panics(raw in arb_rmpv(), ty in select(decode_types())) {
        if let Ok(v) = from_msgpack(&msgpack(&raw), &ty) {
            decoded_values_encode_again(&v, &ty)?;
        }
    }

    /// (a'') Arbitrary bytes against arbitrary types, including generated ones.
    #[test]
    fn arbitrary_bytes_against_generated_types(bytes in arb_msgpack_bytes(), ty in arb_type(true)) {
        if let Ok(v) = from_msgpack(&bytes, &ty) {
            decoded_values_encode_again(&v, &ty)?;
        }
    }

    /// (b) A value that fits its type survives msgpack encoding and decoding.
    #[test]
    fn msgpack_round_trips((ty, v) in arb_typed_value()) {
        let bytes = to_msgpack(&v, &ty).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let back = from_msgpack(&bytes, &ty).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&back, &v);
        prop_assert_eq!(back.is_wholly_known(), v.is_wholly_known());
        // And from then on it is stable: encoding what was decoded gives the same bytes again.
        let again = to_msgpack(&back, &ty).unwrap();
        prop_assert_eq!(to_msgpack(&from_msgpack(&again, &ty).unwrap(), &ty).unwrap(), again);
    }

    /// (c) A decimal of any magnitude sent as text comes back as the very same bytes, unless it is
    /// an exact i64 (which cty itself always sends as an integer, never as text).
    #[test]
    fn decimal_text_goes_back_as_the_same_bytes(text in decimal_text()) {
        let sent = msgpack_string(&text);
        let v = from_msgpack(&sent, &Type::Number).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        let back = to_msgpack(&v, &Type::Number).unwrap();
        match text.parse::<i64>() {
            Ok(i) => {
                prop_assert_eq!(&v, &Value::int(i));
                prop_assert_eq!(back, msgpack(&rmpv::Value::from(i)));
            }
            Err(_) => {
                prop_assert_eq!(&v, &Value::Number(Number::Big(text.clone())));
                prop_assert!(back == sent, "{} went back as {:?}", text, back);
            }
        }
        // Through stored state (JSON) too: the same number comes back.
        let json = serde_json::to_string(&to_json(&v)).unwrap();
        let from_state = from_json(&serde_json::from_str(&json).unwrap(), &Type::Number)
            .map_err(|e| TestCaseError::fail(format!("{text} stored as {json}: {e}")))?;
        prop_assert_eq!(&from_state, &v, "stored as {}", json);
    }

    /// (c') Text that is not a decimal number is refused as a number, never taken for one.
    #[test]
    fn non_decimal_text_is_refused(text in prop_oneof![
        arb_string(),
        (decimal_text(), select(vec!["x", " ", ".", "e", "+", "--", "0x", "\u{0660}"]), any::<prop::sample::Index>())
            .prop_map(|(t, junk, at)| {
                let chars: Vec<char> = t.chars().collect();
                let i = at.index(chars.len() + 1);
                chars[..i].iter().chain(junk.chars().collect::<Vec<_>>().iter()).chain(&chars[i..]).collect()
            }),
    ]) {
        let is_decimal = {
            let t = text.strip_prefix('-').unwrap_or(&text);
            let (m, e) = match t.find(['e', 'E']) { Some(i) => (&t[..i], Some(&t[i + 1..])), None => (t, None) };
            let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
            let m_ok = match m.split_once('.') { Some((a, b)) => digits(a) && digits(b), None => digits(m) };
            m_ok && e.is_none_or(|e| digits(e.strip_prefix(['+', '-']).unwrap_or(e)))
        };
        let r = from_msgpack(&msgpack_string(&text), &Type::Number);
        // Rust's i64 parser also takes a leading `+` ("+5"); that is a decimal too.
        let plus_int = text.parse::<i64>().is_ok();
        prop_assert_eq!(r.is_ok(), is_decimal || plus_int, "{:?} decoded as {:?}", text, r);
    }

    /// (d) JSON (stored state): a wholly-known value comes back equal. `Value::Dynamic` is left
    /// out: `to_json` writes a dynamic value bare, while `from_json` of `dynamic` expects the
    /// `{"type", "value"}` wrapper (see `dynamic_values_do_not_round_trip_through_json`).
    #[test]
    fn json_round_trips((ty, v) in arb_type(false).prop_flat_map(|t| { let v = arb_json_value(&t); (Just(t), v) })) {
        prop_assert!(!has_dynamic(&ty));
        let text = serde_json::to_string(&to_json(&v)).unwrap();
        let back = from_json(&serde_json::from_str(&text).unwrap(), &ty)
            .map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        prop_assert_eq!(&back, &v, "via {}", text);
    }

    /// Type constraints round-trip through their JSON form.
    #[test]
    fn type_json_round_trips(ty in arb_type(true)) {
        prop_assert_eq!(Type::from_json(&ty.to_json()).unwrap(), ty);
    }
}

fn nested_dynamic(depth: usize) -> Vec<u8> {
    let mut raw = rmpv::Value::Array(vec![rmpv::Value::Binary(b"\"number\"".to_vec()), rmpv::Value::from(1)]);
    for _ in 0..depth {
        raw = rmpv::Value::Array(vec![rmpv::Value::Binary(b"\"dynamic\"".to_vec()), raw]);
    }
    msgpack(&raw)
}

/// Nested dynamic values (each level a `[type, value]` pair) decode, and nesting beyond the
/// codec's depth limit (64) or rmpv's is refused.
#[test]
fn nested_dynamic_values_decode_or_are_refused() {
    for depth in [1usize, 10, 60] {
        let v = from_msgpack(&nested_dynamic(depth), &Type::Dynamic).unwrap();
        let bytes = to_msgpack(&v, &Type::Dynamic).unwrap();
        assert_eq!(from_msgpack(&bytes, &Type::Dynamic).unwrap(), v);
    }
    for depth in [65usize, 600, 2000] {
        let e = from_msgpack(&nested_dynamic(depth), &Type::Dynamic).unwrap_err();
        assert!(e.to_string().contains("depth limit") || e.to_string().contains("levels deep"), "{e}");
    }
}

/// Was a bug (debug builds only), fixed by a depth limit: `from_msgpack` recursed once per nested dynamic value, and rmpv lets
/// through up to 510 levels (5.6 KB of msgpack). In a debug build each level of `from_rmpv` takes
/// about 4.4 KB of stack, so on a 2 MiB thread (a test thread, a tokio worker) 470 levels of
/// `[bin "\"dynamic\"", …]` around `[bin "\"number\"", 1]` (471 around a bare `1`) overflow the
/// stack and abort the whole process instead of returning an error. Release builds have small
/// enough frames to reach rmpv's limit (which refuses 511 levels) without overflowing.
/// Minimal input: `nested_dynamic(470)`.
#[test]
fn deeply_nested_dynamic_values_do_not_overflow() {
    for depth in [470usize, 510] {
        assert!(from_msgpack(&nested_dynamic(depth), &Type::Dynamic).is_err());
    }
}

/// Not a property failure of the codec's own contract, but worth knowing: `to_json` of a
/// `Value::Dynamic` drops its type, so `from_json` with `Type::Dynamic` cannot read it back.
/// The JSON round trip above therefore leaves dynamic values out.
#[test]
fn dynamic_values_do_not_round_trip_through_json() {
    let v = Value::Dynamic(Type::String, Box::new(Value::string("hi")));
    let json = to_json(&v);
    assert_eq!(json, serde_json::json!("hi"));
    assert!(from_json(&json, &Type::Dynamic).is_err());
}

// ---------------------------------------------------------------------------------------------
// Decimal equality: what the round trips above rely on to compare numbers sent as text.

/// A decimal `±digits × 10^exp` (digits without leading or trailing zeros, so the triple is the
/// number's one canonical form), and a spelling of it: leading and trailing zeros, the point
/// anywhere, the exponent adjusted to match.
#[derive(Clone, Debug)]
struct Decimal {
    neg: bool,
    digits: String,
    exp: i128,
}

fn arb_decimal(exp: BoxedStrategy<i128>) -> impl Strategy<Value = Decimal> {
    let digits = prop_oneof!["[1-9]".prop_map(String::from), "[1-9][0-9]{0,30}[1-9]".prop_map(String::from),];
    (any::<bool>(), digits, exp).prop_map(|(neg, digits, exp)| Decimal { neg, digits, exp })
}

fn spell(d: &Decimal) -> impl Strategy<Value = String> + use<> {
    let d = d.clone();
    (0usize..3, 0usize..3, any::<prop::sample::Index>(), any::<bool>(), select(vec!["e", "E", "e+"])).prop_map(
        move |(lead, trail, point, force_exp, e)| {
            let mantissa = format!("{}{}{}", "0".repeat(lead), d.digits, "0".repeat(trail));
            // Fraction digits: 0 to len-1, so the integer part is never empty.
            let frac = point.index(mantissa.len());
            let written_exp = d.exp - trail as i128 + frac as i128;
            let (int, fraction) = mantissa.split_at(mantissa.len() - frac);
            let mut s = String::new();
            if d.neg {
                s.push('-');
            }
            s.push_str(int);
            if !fraction.is_empty() {
                s.push('.');
                s.push_str(fraction);
            }
            if written_exp != 0 || force_exp {
                if written_exp < 0 {
                    s.push_str(&format!("e{written_exp}"));
                } else {
                    s.push_str(&format!("{e}{written_exp}"));
                }
            }
            s
        },
    )
}

/// Two spellings, of the same number half the time, of two different numbers otherwise.
fn decimal_pair(exp: fn() -> BoxedStrategy<i128>) -> impl Strategy<Value = (bool, String, String)> {
    (arb_decimal(exp()), arb_decimal(exp()), any::<bool>()).prop_flat_map(|(a, b, same)| {
        let b = if same { a.clone() } else { b };
        let equal = a.neg == b.neg && a.digits == b.digits && a.exp == b.exp;
        (Just(equal), spell(&a), spell(&b))
    })
}

fn small_exponents() -> BoxedStrategy<i128> {
    (-400i128..=400).boxed()
}

fn any_exponents() -> BoxedStrategy<i128> {
    prop_oneof![
        -400i128..=400,
        any::<i64>().prop_map(i128::from),
        (-40i128..=40).prop_map(|d| i64::MAX as i128 + d),
        (-40i128..=40).prop_map(|d| i64::MIN as i128 + d),
        any::<i128>().prop_map(|e| e / 1_000_000),
    ]
    .boxed()
}

proptest! {
    #![proptest_config(cases(512))]

    /// Two decimal texts are equal numbers exactly when they denote the same value, however they
    /// are spelt (exponents within ±400, as the round trips above use).
    #[test]
    fn decimal_equality_is_exact((equal, a, b) in decimal_pair(small_exponents)) {
        let (na, nb) = (Number::Big(a.clone()), Number::Big(b.clone()));
        prop_assert_eq!(na == nb, equal, "{} vs {}", a, b);
        prop_assert_eq!(nb == na, equal, "{} vs {}", b, a);
    }
}

proptest! {
    #![proptest_config(cases(512))]

    /// Was a bug, fixed: the same, with exponents of any size. `from_msgpack`/`from_json` accept any exponent
    /// (the decimal syntax has no bound), but the comparison in value.rs `decimal_key` parses the
    /// exponent as an i64 and then adjusts it with unchecked arithmetic:
    /// - `Number::Big("1e-9223372036854775808") == Number::Big("0.1e-9223372036854775807")`
    ///   (and even `Number::Big("0.1e-9223372036854775808") == Number::Big("1")`) panics with
    ///   "attempt to subtract with overflow" (value.rs, `exp - frac.len()`) in debug builds;
    /// - `Number::Big("10e9223372036854775807") == Number::Big("1")` panics with "attempt to add
    ///   with overflow" (`exp += ...`);
    /// - an exponent beyond i64 makes the key `None`, so `Number::Big("1e9223372036854775808") ==
    ///   Number::Big("2e9223372036854775808")` is true.
    ///
    /// Terraform itself never sends such text (cty writes numbers without an exponent), so only a
    /// hand-written state or a hostile peer reaches this. Run with `cargo test -- --ignored`.
    #[test]
    fn decimal_equality_is_exact_for_any_exponent((equal, a, b) in decimal_pair(any_exponents)) {
        let (na, nb) = (Number::Big(a.clone()), Number::Big(b.clone()));
        let r = std::panic::catch_unwind(|| (na == nb, nb == na));
        prop_assert!(r.is_ok(), "comparing {} and {} panicked", a, b);
        let (ab, ba) = r.unwrap();
        prop_assert_eq!(ab, equal, "{} vs {}", a, b);
        prop_assert_eq!(ba, equal, "{} vs {}", b, a);
    }
}

/// The minimal inputs of the bug above, one per symptom.
#[test]
fn decimal_equality_minimal_failures() {
    let big = |s: &str| Number::Big(s.into());
    assert!(std::panic::catch_unwind(|| big("0.1e-9223372036854775808") == big("1")).is_ok(), "subtract overflow");
    assert!(std::panic::catch_unwind(|| big("10e9223372036854775807") == big("1")).is_ok(), "add overflow");
    assert_ne!(big("1e9223372036854775808"), big("2e9223372036854775808"));
}
