//! One line per figure: what, how much, against which baseline, and whether the goal is met.

pub struct Row {
    pub id: &'static str,
    pub what: String,
    pub figure: String,
    pub baseline: String,
    /// figure ÷ baseline, when the goal is a ratio.
    pub ratio: Option<f64>,
    pub goal: &'static str,
    pub met: bool,
    /// Anything a reader needs to trust the figure (load client CPU, sizes).
    pub note: String,
}

pub fn print(rows: &[Row], smoke: bool) {
    if smoke {
        println!("(smoke run: sizes too small for the figures to mean anything; goals not judged)");
    }
    println!(
        "| id | what | figure | baseline (same run) | ratio | goal | met | note |\n|---|---|---|---|---|---|---|---|"
    );
    for row in rows {
        let ratio = row
            .ratio
            .map(|r| format!("{r:.2}×"))
            .unwrap_or_else(|| "–".into());
        let met = match (smoke, row.met) {
            (true, _) => "–",
            (false, true) => "yes",
            (false, false) => "**no**",
        };
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            row.id, row.what, row.figure, row.baseline, ratio, row.goal, met, row.note
        );
    }
}

/// `12345.6` → `12,346`.
pub fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn thousands() {
        assert_eq!(super::thousands(0.4), "0");
        assert_eq!(super::thousands(999.0), "999");
        assert_eq!(super::thousands(1234.0), "1,234");
        assert_eq!(super::thousands(20_000_000.0), "20,000,000");
    }
}
