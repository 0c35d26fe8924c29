"""Lightning data modules, one per dataset."""
