# Minimal stubs for the parts of scikit-learn that functrain uses (scikit-learn ships no py.typed).
__version__: str
