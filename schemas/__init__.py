"""The contracts every stage shares: archive layout, Arrow schemas, errors."""
