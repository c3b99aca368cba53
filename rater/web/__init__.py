"""HTTP API of the rater (SPEC §7): authentication, routes, error mapping."""
