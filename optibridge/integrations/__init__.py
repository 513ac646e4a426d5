"""Optional integrations with other engines; each imports its engine only when used."""
