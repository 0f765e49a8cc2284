"""Scripts run by other interpreters (e.g. sslyze's own virtualenv); never imported by lab."""
