"""Text for the index: tokenising, wording variants, cutting documents into chunks."""
