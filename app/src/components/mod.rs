//! Parts that pages share: the card row, the add-card panel, form messages, focus helpers.
//! Pages use these; these never import a page.

pub mod add_card_panel;
pub mod brand;
pub mod built_once;
pub mod card_row;
pub mod cards_state;
pub mod focus;
pub mod notice;
