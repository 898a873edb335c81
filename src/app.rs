//! Wiring of transports, transactions, health and ops into a running SBC (being built).
