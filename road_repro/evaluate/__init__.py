"""road_repro.evaluate"""
