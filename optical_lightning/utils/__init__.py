"""Small generic helpers every layer may use: atomic writes, user-facing errors, config resolvers,
language codes, numeric precision, text files and machine resources. Nothing here imports the rest
of the package."""
