"""WSGI (PEP 3333): environ, streaming wsgi.input, start_response, file_wrapper, app threads."""
