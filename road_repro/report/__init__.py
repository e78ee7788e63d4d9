"""road_repro.report"""
