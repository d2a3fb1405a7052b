//! Deno backend of CodeBeaker (being built; see issue 5).
