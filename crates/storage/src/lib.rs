//! galgo-storage
