"""Care logic: centres, peers, enrolments, consent and audit."""
