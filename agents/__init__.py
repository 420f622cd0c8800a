"""stepstream package."""
