//! Serde views of the wire types, and their table rows and text forms.
//!
//! Proto types do not derive serde, and their field names are not what
//! scripts should depend on, so every record `shoal` prints goes through a
//! view here (one file per type). The JSON field names of these structs are
//! the stable `--format json` interface.

pub(crate) mod cluster;
pub(crate) mod image;
pub(crate) mod instance;
pub(crate) mod member;
pub(crate) mod remote;
pub(crate) mod trust;
