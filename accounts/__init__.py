"""Players: the user model, JWT token routes, guilds and parties."""
