//! galgo-metadata
