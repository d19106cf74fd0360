// page module (being written)
