"""The V2G PKI: certificate profiles and checks, test PKI creation, the trust store, TLS contexts."""
