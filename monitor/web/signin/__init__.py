"""The web pages' sign-in at the hospital's OpenID Connect provider (router.py)."""
