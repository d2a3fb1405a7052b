//! Docker backend of CodeBeaker (being built; see issue 4).
