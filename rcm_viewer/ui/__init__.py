"""Everything with a widget in it. The engine rooms never import from here."""
