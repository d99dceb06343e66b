"""Transport: Flask blueprints (2030.5, admin API). Thin: parse, call a service, render."""
