"""Identity: companies, users, API keys, policies and the tokens a login issues.

``service`` holds the rules both the HTTP APIs and the CLI call; ``tokens`` signs and verifies JWTs,
``policies`` maps managed policies to actions, ``ratelimit`` counts failed credential checks."""
