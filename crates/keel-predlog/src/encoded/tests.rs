//! Tests of `encoded`.

use super::*;

fn t(shape: Vec<i64>, data: TensorData) -> Tensor {
    Tensor { shape, data }
}

fn record() -> PredictionRecord {
    PredictionRecord {
        ts_us: 1_714_521_600_000_001,
        prediction_id: "0199-abc".into(),
        request_id: None,
        model: "bc-lr".into(),
        version: 3,
        routing: Some(Routing {
            deployment: "promo".into(),
            variant: "a".into(),
            decision_id: "d-1".into(),
            shadow: true,
        }),
        latency_us: 17,
        inputs: vec![
            (
                "x".into(),
                t(vec![2, 3], TensorData::Fp32(vec![1.5, -2.0, 3.25, 0.0, f32::MAX, -0.5])),
            ),
            ("n".into(), t(vec![2], TensorData::Int64(vec![i64::MIN, 42]))),
            ("h".into(), t(vec![2], TensorData::Fp16(vec![0x3c00, 0xc000]))),
            ("u".into(), t(vec![2], TensorData::Uint16(vec![0, 65535]))),
            ("i8".into(), t(vec![2], TensorData::Int8(vec![-128, 127]))),
            ("f".into(), t(vec![2], TensorData::Bool(vec![true, false]))),
            (
                "s".into(),
                t(vec![2], TensorData::Bytes(vec![b"caf\xc3\xa9".to_vec(), Vec::new()])),
            ),
        ],
        outputs: vec![
            ("label".into(), t(vec![2], TensorData::Int64(vec![0, 1]))),
            ("p".into(), t(vec![2, 2], TensorData::Fp64(vec![0.75, 0.25, 0.5, 0.5]))),
        ],
    }
}

/// Every field and every value reads back as the record's own view reads it.
#[test]
fn encoded_reads_back_as_the_record() {
    let rec = record();
    let mut chunk = EncodedChunk::default();
    assert!(chunk.push_record(&rec));
    assert_eq!((chunk.records(), chunk.rows()), (1, 2));
    let (rows, enc) = chunk.records_iter().next().expect("one record");
    assert_eq!((rows, model_of(enc)), (2, "bc-lr"));
    let (a, b) = (rec.view(), view_encoded(enc).expect("decodes"));
    assert_eq!(
        (
            a.ts_us,
            a.prediction_id,
            a.request_id,
            a.model,
            a.version,
            a.routing,
            a.latency_us
        ),
        (
            b.ts_us,
            b.prediction_id,
            b.request_id,
            b.model,
            b.version,
            b.routing,
            b.latency_us
        )
    );
    assert_eq!(a.rows(), b.rows());
    assert_eq!(a.tensors.len(), b.tensors.len());
    for (x, y) in a.tensors.iter().zip(&b.tensors) {
        assert_eq!((x.is_output, x.name, x.first_dim), (y.is_output, y.name, y.first_dim));
        assert_eq!(x.values.len(), y.values.len(), "{}", x.name);
        assert_eq!(x.values.kind(), y.values.kind(), "{}", x.name);
        for i in 0..x.values.len() + 1 {
            assert_eq!(
                x.values.f64_at(i).map(f64::to_bits),
                y.values.f64_at(i).map(f64::to_bits),
                "{}[{i}]",
                x.name
            );
            assert_eq!(x.values.bool_at(i), y.values.bool_at(i), "{}[{i}]", x.name);
            assert_eq!(x.values.bytes_at(i), y.values.bytes_at(i), "{}[{i}]", x.name);
        }
    }
}

/// The hot loop's reader gives each number as the record's own tensors hold it (`f64_at`
/// over `TensorData`, a separate decoder), and refuses what it cannot read.
#[test]
fn numbers_read_as_f64_at_does() {
    let rec = record();
    let mut chunk = EncodedChunk::default();
    assert!(chunk.push_record(&rec));
    let v = view_encoded(chunk.records_iter().next().expect("one record").1).expect("decodes");
    let own = rec.view();
    for (t, o) in v.tensors.iter().zip(&own.tensors) {
        let n = t.values.len();
        let mut got = Vec::new();
        let read = t.values.numbers(1, n - 1, |j, x| got.push((j, x.to_bits())));
        if t.values.kind() != Kind::Number {
            assert!(!read && got.is_empty(), "{}", t.name);
            continue;
        }
        assert!(read, "{}", t.name);
        let want: Vec<(usize, u64)> = (1..n)
            .map(|i| (i - 1, o.values.f64_at(i).expect("a number").to_bits()))
            .collect();
        assert_eq!(got, want, "{}", t.name);
        assert!(!t.values.numbers(1, n, |_, _| {}), "{}: past the end", t.name);
    }
}

#[test]
fn absent_request_id_and_routing_and_scalars() {
    let mut rec = record();
    rec.request_id = Some(String::new());
    rec.routing = None;
    rec.inputs = vec![("s".into(), t(Vec::new(), TensorData::Fp64(vec![2.0])))];
    let mut chunk = EncodedChunk::default();
    assert!(chunk.push_record(&rec));
    let v = view_encoded(chunk.records_iter().next().expect("one record").1).expect("decodes");
    assert_eq!(v.request_id, Some(""));
    assert_eq!(v.routing, None);
    assert_eq!((v.rows(), chunk.rows()), (1, 1));
    assert_eq!(v.tensors[0].values.f64_at(0), Some(2.0));
}

/// A shape of more than 255 dimensions keeps its first 255 (the record's length says so
/// too), and the record after it still reads back.
#[test]
fn a_tensor_of_more_than_255_dimensions_keeps_the_records_aligned() {
    let mut rec = record();
    rec.outputs = vec![("deep".into(), t(vec![1; 300], TensorData::Fp32(vec![0.5])))];
    let mut chunk = EncodedChunk::default();
    assert!(chunk.push_record(&rec));
    rec.prediction_id = "next".into();
    assert!(chunk.push_record(&rec));
    let ids: Vec<String> = chunk
        .records_iter()
        .map(|(_, r)| view_encoded(r).expect("decodes").prediction_id.to_string())
        .collect();
    assert_eq!(ids, ["0199-abc", "next"]);
}

#[test]
fn a_truncated_buffer_is_an_error_not_a_panic() {
    let mut chunk = EncodedChunk::default();
    assert!(chunk.push_record(&record()));
    let (_, enc) = chunk.records_iter().next().expect("one record");
    for cut in 0..enc.len() {
        assert!(view_encoded(&enc[..cut]).is_err(), "cut at {cut}");
    }
}

/// Records follow one another; clearing keeps the memory and starts over.
#[test]
fn a_chunk_holds_records_in_order_and_clears_without_freeing() {
    let mut chunk = EncodedChunk::default();
    let mut rec = record();
    for i in 0..3 {
        rec.prediction_id = format!("p{i}");
        rec.model = if i == 1 { "other".into() } else { "bc-lr".into() };
        assert!(chunk.push_record(&rec));
    }
    assert_eq!((chunk.records(), chunk.rows()), (3, 6));
    let seen: Vec<(String, String)> = chunk
        .records_iter()
        .map(|(_, r)| {
            let v = view_encoded(r).expect("decodes");
            (model_of(r).to_string(), v.prediction_id.to_string())
        })
        .collect();
    assert_eq!(
        seen,
        [("bc-lr", "p0"), ("other", "p1"), ("bc-lr", "p2")].map(|(m, p)| (m.to_string(), p.to_string()))
    );
    let capacity = chunk.capacity();
    chunk.clear();
    assert!(chunk.is_empty() && chunk.records_iter().next().is_none());
    assert_eq!((chunk.len(), chunk.rows(), chunk.capacity()), (0, 0, capacity));
}

/// Appending a chunk adds its records, in order, after the ones already held.
#[test]
fn an_appended_chunk_follows_the_records_held() {
    let mut rec = record();
    let (mut held, mut more) = (EncodedChunk::default(), EncodedChunk::default());
    for (chunk, ids) in [(&mut held, ["a0", "a1"]), (&mut more, ["b0", "b1"])] {
        for id in ids {
            rec.prediction_id = id.into();
            assert!(chunk.push_record(&rec));
        }
    }
    held.append(&more);
    held.append(&EncodedChunk::default());
    assert_eq!((held.records(), held.rows(), held.len()), (4, 8, 2 * more.len()));
    let ids: Vec<String> = held
        .records_iter()
        .map(|(rows, r)| {
            assert_eq!(rows, 2);
            view_encoded(r).expect("decodes").prediction_id.to_string()
        })
        .collect();
    assert_eq!(ids, ["a0", "a1", "b0", "b1"]);
    assert_eq!(more.records(), 2, "the appended chunk is left as it was");
}
