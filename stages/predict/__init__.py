"""`python -m stages.predict`: score new rows, images or arrays with a packaged model."""
