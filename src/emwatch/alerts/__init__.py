"""Alerts: turn rule observations into alert episodes (one alert per breach, one clear when it ends)."""
