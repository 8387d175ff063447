"""The web page: static HTML and JavaScript that read the API with the user's token."""
