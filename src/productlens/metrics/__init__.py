"""Product metrics as parameterised queries built with SQLGlot (never string-pasted)."""
