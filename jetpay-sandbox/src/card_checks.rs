//! Checks of what a person typed into the hosted form: Luhn, expiry, CVC length. The same rules
//! run in the page's script (for quick feedback) and here (the word that counts). Messages are
//! written for the person filling in the form.

use std::fmt;

/// Card brand, from the number's prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Brand {
    Visa,
    Mastercard,
    Amex,
    Discover,
    Unknown,
}

impl Brand {
    pub fn as_str(self) -> &'static str {
        match self {
            Brand::Visa => "visa",
            Brand::Mastercard => "mastercard",
            Brand::Amex => "amex",
            Brand::Discover => "discover",
            Brand::Unknown => "unknown",
        }
    }

    /// For people: "Visa", "American Express"…
    pub fn display(self) -> &'static str {
        match self {
            Brand::Visa => "Visa",
            Brand::Mastercard => "Mastercard",
            Brand::Amex => "American Express",
            Brand::Discover => "Discover",
            Brand::Unknown => "Card",
        }
    }

    fn cvc_len(self) -> usize {
        if self == Brand::Amex {
            4
        } else {
            3
        }
    }
}

pub fn brand_of(digits: &str) -> Brand {
    let prefix = |n: usize| digits.get(..n).and_then(|p| p.parse::<u32>().ok());
    match (prefix(1), prefix(2), prefix(4)) {
        (Some(4), _, _) => Brand::Visa,
        (_, Some(34 | 37), _) => Brand::Amex,
        (_, Some(51..=55), _) | (_, _, Some(2221..=2720)) => Brand::Mastercard,
        (_, Some(65), _) | (_, _, Some(6011)) => Brand::Discover,
        _ => Brand::Unknown,
    }
}

pub fn luhn_valid(digits: &str) -> bool {
    let mut sum = 0;
    for (i, c) in digits.chars().rev().enumerate() {
        let Some(mut d) = c.to_digit(10) else {
            return false;
        };
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    !digits.is_empty() && sum % 10 == 0
}

/// What the form posts. Only lives for the length of one request.
#[derive(Default, Clone, serde::Deserialize)]
pub struct CardInput {
    #[serde(default)]
    pub card_number: String,
    #[serde(default)]
    pub expiry: String,
    #[serde(default)]
    pub cvc: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub postal_code: String,
}

/// Never print what was typed.
impl fmt::Debug for CardInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CardInput { .. }")
    }
}

/// A card that passed every check. Holds the digits only to choose the test card's outcome; they
/// are dropped with it and never stored or printed.
pub struct ValidCard {
    digits: String,
    pub brand: Brand,
    pub last4: String,
    pub exp_month: u32,
    pub exp_year: u32,
}

impl ValidCard {
    pub fn digits(&self) -> &str {
        &self.digits
    }
}

impl fmt::Debug for ValidCard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ValidCard")
            .field("brand", &self.brand)
            .field("last4", &self.last4)
            .field("exp_month", &self.exp_month)
            .field("exp_year", &self.exp_year)
            .finish()
    }
}

/// Which field a message is about; the form's input ids are these names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    CardNumber,
    Expiry,
    Cvc,
    Name,
    PostalCode,
}

impl Field {
    #[cfg(test)]
    pub const ALL: [Field; 5] = [
        Field::CardNumber,
        Field::Expiry,
        Field::Cvc,
        Field::Name,
        Field::PostalCode,
    ];

    /// The field's name in the error summary.
    pub fn name(self) -> &'static str {
        match self {
            Field::CardNumber => "Card number",
            Field::Expiry => "Expiry date",
            Field::Cvc => "Security code",
            Field::Name => "Name on card",
            Field::PostalCode => "Postal code",
        }
    }

    pub fn id(self) -> &'static str {
        match self {
            Field::CardNumber => "card_number",
            Field::Expiry => "expiry",
            Field::Cvc => "cvc",
            Field::Name => "name",
            Field::PostalCode => "postal_code",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: Field,
    pub message: &'static str,
}

/// Parses `MM/YY` (also `MM / YY`, `MMYY`, `MM/YYYY`) into month and four-digit year.
pub fn parse_expiry(s: &str) -> Result<(u32, u32), &'static str> {
    let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if compact.is_empty() {
        return Err("Enter the expiry date shown on the card, as MM/YY.");
    }
    let (mm, yy) = match compact.split_once('/') {
        Some(parts) => parts,
        None if compact.len() == 4 => compact.split_at(2),
        None => return Err("Enter the expiry date as MM/YY, for example 04/29."),
    };
    let month: u32 = match (mm.len(), mm.parse()) {
        (1 | 2, Ok(m)) => m,
        _ => return Err("Enter the expiry date as MM/YY, for example 04/29."),
    };
    if !(1..=12).contains(&month) {
        return Err("The expiry month must be between 01 and 12.");
    }
    let year: u32 = match (yy.len(), yy.parse::<u32>()) {
        (2, Ok(y)) => 2000 + y,
        (4, Ok(y)) => y,
        _ => return Err("Enter the expiry date as MM/YY, for example 04/29."),
    };
    Ok((month, year))
}

/// Checks every field; all problems at once, in form order.
pub fn validate(input: &CardInput, today: (u32, u32)) -> Result<ValidCard, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut err = |field, message| errors.push(FieldError { field, message });

    let digits: String = input
        .card_number
        .chars()
        .filter(|c| !matches!(c, ' ' | '-'))
        .collect();
    let brand = brand_of(&digits);
    if digits.is_empty() {
        err(Field::CardNumber, "Enter the card number.");
    } else if !digits.chars().all(|c| c.is_ascii_digit()) {
        err(
            Field::CardNumber,
            "The card number can only contain digits.",
        );
    } else if !(12..=19).contains(&digits.len()) {
        err(
            Field::CardNumber,
            "The card number is too short or too long. Check it and try again.",
        );
    } else if !luhn_valid(&digits) {
        err(
            Field::CardNumber,
            "This card number isn't valid. Check it and try again.",
        );
    }

    let expiry = match parse_expiry(&input.expiry) {
        Ok((m, y)) if (y, m) < (today.1, today.0) => {
            err(
                Field::Expiry,
                "This card has expired. Check the date or use another card.",
            );
            None
        }
        Ok(my) => Some(my),
        Err(msg) => {
            err(Field::Expiry, msg);
            None
        }
    };

    let cvc = input.cvc.trim();
    if cvc.is_empty() {
        err(Field::Cvc, "Enter the security code (CVC).");
    } else if !cvc.chars().all(|c| c.is_ascii_digit()) || cvc.len() != brand.cvc_len() {
        err(
            Field::Cvc,
            if brand == Brand::Amex {
                "The security code is the 4 digits on the front of the card."
            } else {
                "The security code is the 3 digits on the back of the card."
            },
        );
    }

    if input.name.trim().is_empty() {
        err(Field::Name, "Enter the name as it appears on the card.");
    }

    let postal = input.postal_code.trim();
    if postal.is_empty() {
        err(
            Field::PostalCode,
            "Enter the postal code of the card's billing address.",
        );
    } else if postal.len() > 10
        || !postal
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == ' ' || c == '-')
    {
        err(
            Field::PostalCode,
            "Enter a valid postal code, for example 90210.",
        );
    }

    match (errors.is_empty(), expiry) {
        (true, Some((exp_month, exp_year))) => Ok(ValidCard {
            last4: digits[digits.len() - 4..].to_owned(),
            digits,
            brand,
            exp_month,
            exp_year,
        }),
        _ => Err(errors),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(number: &str, expiry: &str, cvc: &str) -> CardInput {
        CardInput {
            card_number: number.into(),
            expiry: expiry.into(),
            cvc: cvc.into(),
            name: "Ada Lovelace".into(),
            postal_code: "H2X 1Y4".into(),
        }
    }

    #[test]
    fn luhn_and_brands() {
        assert!(luhn_valid("4242424242424242"));
        assert!(!luhn_valid("4242424242424241"));
        assert_eq!(brand_of("4242424242424242"), Brand::Visa);
        assert_eq!(brand_of("5555555555554444"), Brand::Mastercard);
        assert_eq!(brand_of("2221000000000009"), Brand::Mastercard);
        assert_eq!(brand_of("378282246310005"), Brand::Amex);
        assert_eq!(brand_of("6011111111111117"), Brand::Discover);
    }

    #[test]
    fn expiry_formats() {
        assert_eq!(parse_expiry("04/29"), Ok((4, 2029)));
        assert_eq!(parse_expiry(" 4 / 2031 "), Ok((4, 2031)));
        assert_eq!(parse_expiry("1229"), Ok((12, 2029)));
        assert!(parse_expiry("13/29").is_err());
        assert!(parse_expiry("").is_err());
        assert!(parse_expiry("aa/bb").is_err());
    }

    #[test]
    fn valid_card_keeps_only_what_may_be_stored() {
        let card = validate(&input("4242 4242 4242 4242", "12/30", "123"), (1, 2026)).unwrap();
        assert_eq!(card.brand, Brand::Visa);
        assert_eq!(card.last4, "4242");
        assert_eq!((card.exp_month, card.exp_year), (12, 2030));
        assert!(!format!("{card:?}").contains("42424242"));
    }

    #[test]
    fn this_month_is_still_valid_last_month_is_not() {
        assert!(validate(&input("4242424242424242", "05/26", "123"), (5, 2026)).is_ok());
        let errs = validate(&input("4242424242424242", "04/26", "123"), (5, 2026)).unwrap_err();
        assert_eq!(errs[0].field, Field::Expiry);
    }

    #[test]
    fn amex_needs_four_digit_cvc() {
        let errs = validate(&input("378282246310005", "12/30", "123"), (1, 2026)).unwrap_err();
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, Field::Cvc);
        assert!(errs[0].message.contains("4 digits"));
        assert!(validate(&input("378282246310005", "12/30", "1234"), (1, 2026)).is_ok());
    }

    #[test]
    fn reports_every_problem_in_form_order() {
        let errs = validate(&CardInput::default(), (1, 2026)).unwrap_err();
        let fields: Vec<Field> = errs.iter().map(|e| e.field).collect();
        assert_eq!(fields, Field::ALL.to_vec());
        let errs = validate(&input("4242424242424241", "12/30", "123"), (1, 2026)).unwrap_err();
        assert_eq!(
            errs[0].message,
            "This card number isn't valid. Check it and try again."
        );
    }
}
