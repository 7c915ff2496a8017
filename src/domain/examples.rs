//! The seed signal (`shared/seed/example-signal.txt`), as the OpenAPI document's examples.

use serde_json::{json, Value};

/// The seed signal as a client sends it.
pub fn input() -> Value {
    json!({
        "title": "DeepSeek targets $45B valuation in its first funding round following highly efficient LLM releases",
        "summary": "DeepSeek's $45B valuation validates algorithmic efficiency over brute-force compute scaling.",
        "body": "DeepSeek, the Chinese AI research lab that disrupted the generative AI landscape in early 2025, is reportedly targeting a $45 billion valuation in its inaugural funding round.",
        "score": 7,
        "category": "Industry",
        "published_at": "2026-05-06T18:02:00Z",
        "sections": [
            {"heading": "Technical Context", "body": "DeepSeek's meteoric rise is driven by heavily optimized model architectures, most notably Multi-head Latent Attention (MLA) and DeepSeekMoE."},
            {"heading": "Why It Matters", "body": "Rigorous systems engineering, custom CUDA kernels, and architectural innovation can bridge the compute gap."},
            {"heading": "What to Watch Next", "body": "Keep an eye on how US-based labs pivot their research pipelines."}
        ],
        "tags": ["DeepSeek", "LLM", "Algorithmic Efficiency", "Venture Capital", "AI Architecture"],
        "source_url": "https://example.com/original-story"
    })
}

/// The seed signal as the service returns it.
pub fn signal() -> Value {
    let mut v = input();
    let o = v.as_object_mut().expect("an object");
    o.insert("id".into(), json!("01968a4e-1c40-7cc3-9a51-4b1f0e6e2d10"));
    o.insert("slug".into(), json!("deepseek-targets-45b-valuation"));
    o.insert("created_at".into(), json!("2026-05-06T18:05:12.123456Z"));
    o.insert("updated_at".into(), json!("2026-05-06T18:05:12.123456Z"));
    v
}

#[cfg(test)]
mod tests {
    use crate::domain::input::SignalInput;

    #[test]
    fn the_examples_are_what_the_service_takes_and_gives() {
        let input = SignalInput::parse(&super::input()).unwrap();
        assert_eq!(input.tags.len(), 5);
        let signal: serde_json::Value = super::signal();
        let keys: Vec<&String> = signal.as_object().unwrap().keys().collect();
        let mut fields: Vec<&str> = crate::domain::signal::ALL_FIELDS.to_vec();
        fields.sort();
        let mut keys: Vec<&str> = keys.iter().map(|k| k.as_str()).collect();
        keys.sort();
        assert_eq!(keys, fields);
    }
}
