"""Wire codecs: values to text and back, no I/O, no Twisted, no session state."""
