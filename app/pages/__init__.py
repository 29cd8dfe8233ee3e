"""One module per page: its context model, its builder, its figures and its HTML spec."""
