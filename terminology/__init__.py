"""Value sets and code recognition for the codes real EHRs send."""
