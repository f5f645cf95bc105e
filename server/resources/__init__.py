"""The Resource classes, by concern; server/app.py holds the guard and the route table."""
