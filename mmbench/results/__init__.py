"""The bottom layer every plugin needs: the results store and the run-record schema, the generic
registry and name rules, and the user-facing errors. It imports nothing else of mmbench."""
