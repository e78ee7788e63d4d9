"""road_repro.train"""
