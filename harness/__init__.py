"""Code the tests and the scripts share: neither imports the other, both import this."""
